/* info.c: `sae info` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae info' is not implemented yet");
}
