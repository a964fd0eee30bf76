/* main.c: `sae`, the offline companion. Dispatches to one file per subcommand. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "io/mapped.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"info", cmd_info, "validate a model folder as saed does; JSON summary on stdout"},
    {"encode", cmd_encode, "encode activation files into sparse features (JSON Lines)"},
    {"synth", cmd_synth, "make activations with known ground-truth features over real text"},
    {"train", cmd_train, "train an SAE (standard, topk) or a stacked autoencoder"},
    {"harvest", cmd_harvest, "run text through a language model into activation and tokens files"},
    {"index", cmd_index, "build the SQLite feature index over a corpus"},
    {"merge", cmd_merge, "merge index shards into one index"},
    {"export", cmd_export, "write an index as Neuronpedia upload batches (SAEDashboard's format)"},
    {"bench", cmd_bench, "measure encode speed against raw BLAS on the same shapes"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sae <command> [options]   (sae <command> --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

/* SIGBUS: an input file (weights, activations) shrank while mapped, say one
 * being rewritten by another job. Names the file and returns; SA_RESETHAND
 * restored the default action, so the access faults again and sae ends by
 * SIGBUS as it would have, but explained. */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char msg[768];
    size_t n = sae_mapped_explain("sae", si->si_addr, msg, sizeof msg);
    if (write(STDERR_FILENO, msg, n) < 0) {
        /* Nothing left to tell it with. */
    }
}

int main(int argc, char **argv)
{
    struct sigaction bus = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_RESETHAND};
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL);
    if (argc < 2) {
        usage(stderr);
        return SAE_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return SAE_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sae: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return SAE_EXIT_USAGE;
}
