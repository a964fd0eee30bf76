/* merge.c: `sae merge` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_merge(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae merge' is not implemented yet");
}
