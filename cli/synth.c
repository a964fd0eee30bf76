/* synth.c: `sae synth` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae synth' is not implemented yet");
}
