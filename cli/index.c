/* index.c: `sae index` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_index(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae index' is not implemented yet");
}
