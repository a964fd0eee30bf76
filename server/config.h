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

/* Every setting, after parsing and validation. Strings are owned. */
struct saed_config {
    char *model;                /* model folder */
    char *index;                /* feature index file ("" none) */
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
    uint64_t workers;           /* encode workers; 0: = threads */
    bool batching;
    uint64_t max_batch_rows;
    uint64_t max_batch_wait_us;
    uint64_t max_queue_rows;
    uint64_t max_request_rows;
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
    uint64_t connection_memory_limit;
    bool gzip;
    uint64_t gzip_min_bytes;
    char *cors_origins;         /* comma-separated; "" none */
    char *api_key;              /* "" none */
    bool quiet;
};

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
