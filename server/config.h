/* config.h: saed's settings. One table (config.c) of (name, type, default,
 * bounds or validator, help) drives the config file parser, the command-line
 * flags and `saed --help`, so the three can never disagree. Precedence:
 * defaults < config file < environment (SAED_API_KEY) < flags. */
#ifndef SAED_CONFIG_H
#define SAED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/error.h"

/* What the config names for one SAE (CONTRACT 7): from --model (id
 * "default"), --sae ID=DIR, an [sae ID] section or the --release walk
 * (saes.c). Strings owned; "" means unset. */
struct saed_sae_spec {
    char *id, *model_dir, *index_path, *source_id;
    char *model_name, *hook_name, *hook_name_out, *neuronpedia_id;
    int from;                   /* 0 --model, 1 --sae, 2 a section, 3 --release */
};

/* An SAE id: [A-Za-z0-9._-]+, at most SAED_ID_MAX bytes. */
#define SAED_ID_MAX 128
bool config_id_ok(const char *id, size_t len);

/* Every setting, after parsing and validation. Strings are owned. */
struct saed_config {
    char *model;                /* model folder of the SAE "default" ("" none) */
    char *release;              /* release folder walked for SAE folders ("" none) */
    char *default_sae;          /* id of the SAE the unprefixed routes use ("" the first) */
    uint64_t max_mapped_bytes;  /* weights kept mapped, all SAEs together; 0 no budget */
    char *sae_flag;             /* the last --sae value (the flag parser's slot) */
    char *index;                /* feature index file ("" none) */
    char *lm;                   /* language model folder of /v1/encode_text ("" none) */
    char *source_id;            /* Neuronpedia layer id ("" = from neuronpedia_id/hook_name) */
    char *model_name;           /* names replacing the folder's ("" = the folder's) */
    char *hook_name;
    char *hook_name_out;
    char *neuronpedia_id;
    char *web_root;             /* web/ folder ("" = found next to the binary) */
    char *compute;              /* "native" (F16/BF16 kept, half kernels) or "f32" */
    char *listen;               /* "host:port" */
    uint64_t threads;           /* CPU budget; 0: detect (affinity and cgroup quota) */
    uint64_t http_threads;      /* MHD polling threads; 0: = threads */
    uint64_t workers;           /* encode workers; 0: one, with BLAS on every thread */
    bool batching;
    uint64_t max_batch_rows;
    uint64_t max_batch_wait_us;
    uint64_t max_queue_rows;
    uint64_t max_request_rows;
    uint64_t max_request_texts;
    uint64_t max_body_bytes;
    uint64_t max_body_total_bytes;
    uint64_t max_reply_bytes;
    uint64_t max_reply_bytes_total;
    uint64_t max_connections;
    uint64_t max_connections_per_ip;
    uint64_t header_timeout_s;
    uint64_t connection_timeout_s;
    uint64_t request_timeout_s;
    uint64_t drain_timeout_s;
    uint64_t max_streams;       /* concurrent POST /v1/encode/stream; 0: route off */
    uint64_t stream_timeout_s;  /* a stream's total deadline */
    uint64_t max_stream_spool_bytes; /* a stream's reply spool on disk; 0: no cap */
    uint64_t connection_memory_limit;
    bool gzip;
    uint64_t gzip_min_bytes;
    uint64_t feature_cache_mib; /* rendered feature replies kept per index */
    bool prerender_features;    /* render them when the index loads */
    char *cors_origins;         /* comma-separated; "" none */
    char *api_key;              /* "" none */
    bool quiet;

    struct saed_sae_spec *specs; /* (n_specs) owned: --model, --sae and [sae ID] SAEs */
    size_t n_specs;
    struct saed_sae_spec *index_for; /* (n_index_for) owned: --index ID=FILE (id, index_path) */
    size_t n_index_for;
};

/* Frees a spec's strings. */
void config_spec_free(struct saed_sae_spec *s);
/* Copies src into *dst (new strings); 0 or -1 out of memory. */
int config_spec_copy(struct saed_sae_spec *dst, const struct saed_sae_spec *src);

/* Fills cfg from defaults, the file named by --config (if any), the
 * environment and argv. Returns 0; 1 with err set for bad settings; 2 with err
 * set for bad usage (unknown flag, missing value). *exit_now is set when
 * --help or --version printed something and saed should exit 0. */
int config_load(struct saed_config *cfg, int argc, char **argv, bool *exit_now, sae_error *err);

/* Writes the usage text, every key with its default and meaning. */
void config_usage(FILE *out);

/* Frees the strings of cfg. */
void config_free(struct saed_config *cfg);

/* Splits "host:port" or "[v6]:port"; host is written to host (hostcap bytes).
 * Returns 0 or -1. */
int config_split_listen(const char *listen, char *host, size_t hostcap, unsigned *port);

#endif
