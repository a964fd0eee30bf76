/* format_internal.h: what format.c and the release loaders (format_*.c)
 * share: one loader per layout, and the path and JSON helpers they all use.
 * Not for use outside core/sae/format*.c. */
#ifndef SAE_FORMAT_INTERNAL_H
#define SAE_FORMAT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "io/error.h"
#include "sae/model_cfg.h"
#include "sae/parts.h"

/* The loaders, each described in its file. dir is the SAE's folder. */
int sae_format_gemmascope(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err);
int sae_format_llamascope(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err);
int sae_format_llamascope_r1(const char *dir, sae_parts *p, sae_model_warnings *warn,
                             sae_error *err);
int sae_format_dictlearn(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err);

/* dir/name in a new string (caller frees), or NULL when out of memory. */
char *sae_format_path(const char *dir, const char *name);

/* True when dir/name exists (as anything). */
bool sae_format_exists(const char *dir, const char *name);

/* The last n components of dir's absolute path (symlinks resolved), joined by
 * '/', in a new string (caller frees); fewer when the path is shorter. The
 * folder names are what Gemma Scope and Llama Scope name an SAE by. */
int sae_format_tail(const char *dir, int n, char **out, sae_error *err);

/* Reads dir/name as a JSON object (size-capped, duplicate keys refused);
 * *path gets dir/name for messages (caller frees both, also on failure). */
int sae_format_json(const char *dir, const char *name, json_t **out, char **path, sae_error *err);

/* Required fields of a JSON object, each refused with a message naming path
 * and key when absent or of the wrong type: a positive integer, a finite
 * number, a string (borrowed from obj). */
int sae_format_uint(const json_t *obj, const char *key, const char *path, size_t *out,
                    sae_error *err);
int sae_format_num(const json_t *obj, const char *key, const char *path, double *out,
                   sae_error *err);
int sae_format_str(const json_t *obj, const char *key, const char *path, const char **out,
                   sae_error *err);

/* Sets p->weights_path to dir/name and opens it with `open` (a reader of
 * core/io: safetensors, npz or torch). */
int sae_format_open(sae_parts *p, const char *dir, const char *name,
                    int (*open)(const char *, sae_st_file **, sae_error *), sae_error *err);

#endif
