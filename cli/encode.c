/* encode.c: `sae encode` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_encode(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae encode' is not implemented yet");
}
