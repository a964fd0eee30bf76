/* test_outfile.c: the temporary-file-and-rename writer (core/io/outfile.c) that
 * every file saed's tools write goes through: a committed file replaces the
 * target whole, an abandoned or failed one leaves the target as it was and
 * no temporary behind. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "io/outfile.h"
#include "unit.h"

/* How many entries unit_dir holds. */
static int entries(void)
{
    char *cmd;
    ck_assert_int_ge(asprintf(&cmd, "ls -A '%s' | wc -l", unit_dir), 0);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    free(cmd);
    return n;
}

/* Writes text to path through an outfile and commits it. */
static void write_text(const char *path, const char *text)
{
    sae_outfile o;
    sae_error err;
    ck_assert_int_eq(sae_outfile_open(&o, path, &err), 0);
    fputs(text, o.fp);
    ck_assert_msg(sae_outfile_commit(&o, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(o.fp);
}

/* path's whole content. */
static char *content(const char *path)
{
    size_t len;
    char *s = sae_fixture_read_file(path, &len);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_commit_replaces_the_target)
{
    char *p = unit_path("a.txt");
    write_text(p, "old\n");
    /* The mode is what open(2) would give: 0666 less the umask. */
    mode_t old_mask = umask(027);
    write_text(p, "new and longer\n");
    umask(old_mask);
    char *s = content(p);
    ck_assert_str_eq(s, "new and longer\n");
    free(s);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(entries(), 1);
    free(p);
}
END_TEST

START_TEST(test_abort_leaves_the_target)
{
    char *p = unit_path("a.txt");
    write_text(p, "kept\n");
    sae_outfile o;
    sae_error err;
    ck_assert_int_eq(sae_outfile_open(&o, p, &err), 0);
    fputs("half a fi", o.fp);
    fflush(o.fp);
    ck_assert_int_eq(entries(), 2); /* the temporary is beside the target */
    sae_outfile_abort(&o);
    sae_outfile_abort(&o); /* twice is harmless */
    char *s = content(p);
    ck_assert_str_eq(s, "kept\n");
    free(s);
    ck_assert_int_eq(entries(), 1);
    free(p);
}
END_TEST

START_TEST(test_open_in_a_missing_folder_names_it)
{
    char *p = unit_path("no/such/folder/a.txt");
    sae_outfile o;
    sae_error err;
    ck_assert_int_eq(sae_outfile_open(&o, p, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, p));
    ck_assert_ptr_null(o.fp);
    sae_outfile_abort(&o);
    free(p);
}
END_TEST

/* A file that cannot be written whole (a file-size limit, as a full disk)
 * fails at commit, naming the target; the old target and nothing else stays. */
START_TEST(test_failed_write_keeps_the_old_target)
{
    char *p = unit_path("big.bin");
    write_text(p, "old\n");
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = 1 << 16, .rlim_max = 1 << 16};
        setrlimit(RLIMIT_FSIZE, &rl);
        sae_outfile o;
        sae_error err;
        if (sae_outfile_open(&o, p, &err))
            _exit(2);
        static char block[1 << 12];
        for (int i = 0; i < 64; i++)
            fwrite(block, 1, sizeof block, o.fp);
        int rc = sae_outfile_commit(&o, &err);
        _exit(rc == SAE_EIO && strstr(err.msg, p) && strstr(err.msg, "write failed") ? 0 : 3);
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    char *s = content(p);
    ck_assert_str_eq(s, "old\n");
    free(s);
    ck_assert_int_eq(entries(), 1);
    free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("outfile");
    TCase *tc = tcase_create("outfile");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_commit_replaces_the_target);
    tcase_add_test(tc, test_abort_leaves_the_target);
    tcase_add_test(tc, test_open_in_a_missing_folder_names_it);
    tcase_add_test(tc, test_failed_write_keeps_the_old_target);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
