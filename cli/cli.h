/* cli.h: what every `sae` subcommand shares: exit codes, error printing,
 * the options table (options.h) and the progress line. */
#ifndef SAE_CLI_H
#define SAE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "options.h"

/* Named exit codes (CONTRACT section 1). */
enum { SAE_EXIT_OK = 0, SAE_EXIT_FAILURE = 1, SAE_EXIT_USAGE = 2 };

/* Each subcommand: argv[0] is the subcommand name. Returns an exit code. */
int cmd_info(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_harvest(int argc, char **argv);

/* Prints "sae: error: <message>" on stderr and returns SAE_EXIT_FAILURE. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "sae: error: <err->msg>" and returns SAE_EXIT_FAILURE. */
int cli_fail_err(const sae_error *err);
/* Prints "sae <cmd>: <message>" and a hint to --help, returns SAE_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "sae: warning: <message>" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* When out names an existing file that is also one of the n inputs (the same
 * inode, whatever the spelling), prints a usage error for cmd and returns its
 * exit code; otherwise -1. A tool that renames its output into place would
 * otherwise replace its own input. */
int cli_check_not_input(const char *cmd, const char *out, const char *const *inputs, size_t n);

/* Progress on stderr for long work: a bar with rate and ETA when stderr is a
 * terminal, a plain line every few seconds otherwise; nothing when quiet. */
typedef struct cli_progress {
    const char *label;      /* "index", "train", ... */
    const char *unit;       /* "tokens", "steps", ... */
    uint64_t total;         /* 0 when unknown */
    bool quiet, tty;
    double t_start, t_last;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, const char *unit, uint64_t total,
                        bool quiet);
void cli_progress_update(cli_progress *p, uint64_t done);
void cli_progress_finish(cli_progress *p, uint64_t done);


#endif
