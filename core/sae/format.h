/* format.h: which layout an SAE folder is in, and the loader of each release
 * layout.
 *
 * A folder is recognised by the files it holds, in this order:
 *   cfg.json (+ sae_weights.safetensors or sae.safetensors)  SAELens, sparsify
 *   params.npz                                              Gemma Scope
 *   hyperparams.json + checkpoints/final.safetensors        Llama Scope
 *   config.json + ae.pt                                     dictionary_learning
 *   config.json + sae_weights.safetensors                   Llama Scope R1-distill
 * Anything else is refused with one line saying what the folder holds and
 * what saed reads (a hub root of SAE subfolders is told to pick one).
 * SAELens and sparsify folders are read by model.c / model_cfg.c; each other
 * layout has a loader (format_*.c) that composes the canonical SAELens
 * tensors exactly as SAELens' own loader for that release does
 * (docs/FORMATS.md lists them, with where a library's own code differs). */
#ifndef SAE_FORMAT_H
#define SAE_FORMAT_H

#include "io/error.h"
#include "sae/model_cfg.h" /* sae_model_warnings */
#include "sae/parts.h"

typedef enum sae_format {
    SAE_FORMAT_SAELENS,       /* cfg.json: SAELens or sparsify, read by model.c */
    SAE_FORMAT_GEMMASCOPE,    /* params.npz */
    SAE_FORMAT_LLAMASCOPE,    /* hyperparams.json + checkpoints/final.safetensors */
    SAE_FORMAT_DICTLEARN,     /* config.json + ae.pt */
    SAE_FORMAT_LLAMASCOPE_R1, /* config.json + sae_weights.safetensors */
} sae_format;

/* The layout's name as messages and docs/FORMATS.md spell it. */
const char *sae_format_name(sae_format f);

/* Finds the layout of the folder dir (which exists and is a folder), or
 * fails with one line naming what it holds and what saed reads. */
int sae_format_detect(const char *dir, sae_format *out, sae_error *err);

/* Runs the loader of layout f (not SAE_FORMAT_SAELENS) on dir, filling *p
 * (zeroed by the caller; the caller frees it with sae_parts_free, also on
 * failure). Warnings are appended to warn (may be NULL). */
int sae_format_compose(const char *dir, sae_format f, sae_parts *p, sae_model_warnings *warn,
                       sae_error *err);

#endif
