/* options.h: the options of a `sae` subcommand as a table, the one parser
 * that walks argv against it and the --help generated from it.
 *
 * A subcommand declares each flag once (name, value type, bounds, where the
 * value goes, help text, required or repeatable) and calls cli_parse. The
 * rules every subcommand then shares:
 *   - "--help" or "-h" prints the help on stdout and ends with exit 0;
 *   - an argument that starts with '-' (but "-" alone) is an option, never a
 *     file: a mistyped flag after `--activations A B` is an unknown option;
 *   - a value is the next argument unless that starts with "--" (then the
 *     value is missing: `--model --out x`); "-0.5" is a value;
 *   - numbers are decimal, whole and within the option's bounds;
 *   - a repeated option replaces its value, unless it is repeatable;
 *   - every usage error prints `sae <cmd>: <what>` and a hint to --help, and
 *     returns exit code 2 before any work starts. */
#ifndef SAE_CLI_OPTIONS_H
#define SAE_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What an option's value is, and how it is stored at `dst`. */
typedef enum cli_type {
    CLI_FLAG,   /* no value; a bool at dst (if any) is set */
    CLI_PATH,   /* a file or folder: the const char * at dst borrows argv */
    CLI_STRING, /* text copied into the char array at dst (1 to size-1 bytes) */
    CLI_U64,    /* decimal integer in [lo, hi] into an unsigned (or non-negative
                 * int) field of `size` 1, 2, 4 or 8 bytes */
    CLI_DOUBLE, /* decimal number in [dlo, dhi] into a double or a float */
    CLI_LIST,   /* paths up to the next option (`--activations A B C`), appended
                 * to the array at dst; at least one */
    CLI_PARSE,  /* a value read by the option's own `parse` */
} cli_type;

/* One option. Unnamed (name NULL), it describes the operands: the arguments
 * that are not options (`sae info MODEL_DIR`, `sae merge SHARD.db...`). */
typedef struct cli_opt {
    const char *name; /* "--top-k"; NULL for the operands */
    cli_type type;
    const char *arg; /* the value's name in --help and messages: "K", "FILE" */
    void *dst;       /* where the value goes (borrowed); NULL: accepted, ignored */
    size_t size;     /* bytes of the field at dst (of one element if repeatable) */
    size_t *count;   /* repeatable: values so far; each lands at dst + count*size */
    size_t max;      /* repeatable: at most this many values */
    uint64_t lo, hi; /* CLI_U64 bounds */
    double dlo, dhi; /* CLI_DOUBLE bounds */
    int (*parse)(const char *value, void *dst); /* CLI_PARSE: 0, or -1 if invalid */
    const char *want; /* CLI_PARSE: what a valid value is, for the message */
    bool *given;      /* set to true when the option appears (may be shared) */
    bool required;
    const char *help; /* one line per '\n'; NULL: left out of --help (internal) */
} cli_opt;

/* `.dst` and `.size` of a field; for a repeatable option, name element 0. */
#define CLI_TO(field) .dst = &(field), .size = sizeof(field)

/* The text of a macro's value, for help strings: CLI_XSTR(SAE_AE_MAX_LAYERS)
 * is "8". */
#define CLI_STR_(x) #x
#define CLI_XSTR(x) CLI_STR_(x)

/* `.opts` and `.n_opts` of a cli_spec from an array. */
#define CLI_OPTS(array) .opts = (array), .n_opts = sizeof(array) / sizeof((array)[0])

/* A subcommand's options and the text around them in its --help. */
typedef struct cli_spec {
    const char *cmd;   /* "encode" */
    const char *usage; /* the synopsis: "usage: sae encode ...\n" */
    const char *about; /* what the command does, after a blank line */
    const cli_opt *opts;
    size_t n_opts;
} cli_spec;

/* Walks argv[1..argc) against spec->opts, storing every value where its option
 * says, then checks that the required ones were given. Returns -1 when the
 * command should go on, SAE_EXIT_OK after --help, or SAE_EXIT_USAGE after
 * printing the problem. Nothing is allocated. */
int cli_parse(const cli_spec *spec, int argc, char **argv);

/* The --help text: synopsis, about, then one entry per option with help. */
void cli_help(const cli_spec *spec, FILE *out);

/* Strict number parsing of a flag's value: the whole string must be a decimal
 * number (no spaces, no hex, no inf or nan) lying within [lo, hi]. Return 0 on
 * success, -1 otherwise (nothing written). For the parse functions of options
 * whose values hold numbers ("0/4", "4,3,2"). */
int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);

/* --compute native|f32, one meaning for every command that loads an SAE
 * (saed's key `compute`): native keeps F16/BF16 weights in 16 bits on the
 * half-precision kernels (core/sae/kernel.h), f32 converts them at load and
 * runs OpenBLAS, today's F32 path. An F32 model is the same either way.
 * cli_parse_compute reads the value into the sae_compute at dst; the field
 * starts at SAE_COMPUTE_NATIVE (0). CLI_COMPUTE_OPT(field, given) is the
 * table entry (given: a bool * set when the flag appears, or NULL). */
int cli_parse_compute(const char *value, void *dst);
#define CLI_COMPUTE_HELP                                                                         \
    "native (default: F16/BF16 weights kept in 16 bits, half-precision\n"                    \
    "kernels) or f32 (converted to F32 at load, OpenBLAS)"
#define CLI_COMPUTE_OPT(field, given_flag)                                                       \
    {"--compute", CLI_PARSE, "native|f32", CLI_TO(field), .parse = cli_parse_compute,                \
     .want = "native or f32", .given = (given_flag), .help = CLI_COMPUTE_HELP}

#endif
