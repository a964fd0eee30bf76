/* bench.c: `sae bench` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae bench' is not implemented yet");
}
