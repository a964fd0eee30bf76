/* train.c: `sae train` is not implemented yet (an open issue covers it). */
#include "cli.h"

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail("'sae train' is not implemented yet");
}
