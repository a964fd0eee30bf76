/* unit.h: what the Check suites here share. A fresh temporary folder for each
 * test (unit_dir: made by unit_setup, removed with its contents by
 * unit_teardown, so a failed test leaves nothing behind for the next), paths
 * in it, and main's run-and-report. Header-only: each test program is one
 * file, and this keeps it so. */
#ifndef SAE_UNIT_H
#define SAE_UNIT_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

/* This test's temporary folder, between unit_setup and unit_teardown. */
static char *unit_dir;

/* A checked fixture's setup: makes unit_dir, named after the test program. */
static inline void unit_setup(void)
{
    unit_dir = sae_fixture_tmpdir(program_invocation_short_name);
    ck_assert_ptr_nonnull(unit_dir);
}

/* A checked fixture's teardown: removes unit_dir and everything in it. */
static inline void unit_teardown(void)
{
    sae_fixture_rmtree(unit_dir);
    free(unit_dir);
    unit_dir = NULL;
}

/* unit_dir/name (caller frees). */
static inline char *unit_path(const char *name)
{
    char *p;
    ck_assert_int_ge(asprintf(&p, "%s/%s", unit_dir, name), 0);
    return p;
}

/* Runs every test of s and frees the runner; main's exit status. */
static inline int unit_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
