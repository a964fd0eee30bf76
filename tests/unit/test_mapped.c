/* test_mapped.c: the registry of file mappings (core/io/mapped.c) that explains
 * a SIGBUS, fed by the real mapping code: a safetensors file and an
 * activations file are registered while open and forgotten when freed. The
 * end-to-end case (saed dying on weights truncated in place, naming them) is
 * in tests/hardening. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/activations.h"
#include "fixture.h"
#include "io/mapped.h"
#include "io/safetensors.h"
#include "unit.h"

/* The explanation for a fault at addr. */
static const char *explain(const void *addr)
{
    static char buf[768];
    size_t n = sae_mapped_explain("saed", addr, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_int_eq(buf[n - 1], '\n');
    return buf;
}

START_TEST(test_weights_named_while_open)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    sae_error err;
    ck_assert_int_eq(sae_fixture_write_model(unit_dir, &o, &err), 0);
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/sae_weights.safetensors", unit_dir), 0);
    sae_st_file *f;
    ck_assert_int_eq(sae_st_open(path, &f, &err), 0);
    const uint8_t *base = f->base;
    size_t size = f->size;
    char want[600];
    snprintf(want, sizeof want, "saed: fatal: %s shrank while it was memory-mapped", path);
    ck_assert_ptr_nonnull(strstr(explain(base), want));
    ck_assert_ptr_nonnull(strstr(explain(base + size - 1), want));
    ck_assert_ptr_null(strstr(explain(base + size), path));
    sae_st_free(f);
    /* Gone with the mapping: a later fault there is not blamed on it. */
    const char *after = explain(base);
    ck_assert_ptr_null(strstr(after, path));
    ck_assert_ptr_nonnull(strstr(after, "saed: fatal: SIGBUS: a memory-mapped file"));
    free(path);
}
END_TEST

/* Where path is mapped in this process, from /proc/self/maps; NULL if not. */
static void *mapping_of(const char *path)
{
    FILE *fp = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(fp);
    char line[4096];
    void *at = NULL;
    while (!at && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        size_t n = strlen(line), m = strlen(path);
        unsigned long lo;
        if (n > m && !strcmp(line + n - m, path) && sscanf(line, "%lx-", &lo) == 1)
            at = (void *)lo;
    }
    fclose(fp);
    return at;
}

START_TEST(test_activations_named_while_open)
{
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/acts.npy", unit_dir), 0);
    sae_error err;
    ck_assert_int_eq(sae_fixture_write_activations(path, 64, 16, SAE_DT_F32, 7, &err), 0);
    const char *paths[] = {path};
    sae_acts *a;
    ck_assert_int_eq(sae_acts_open(paths, 1, &a, &err), 0);
    const char *map = mapping_of(path);
    ck_assert_ptr_nonnull(map);
    ck_assert_ptr_nonnull(strstr(explain(map + 100), path));
    sae_acts_free(a);
    ck_assert_ptr_null(mapping_of(path));
    ck_assert_ptr_null(strstr(explain(map + 100), path));
    free(path);
}
END_TEST

START_TEST(test_long_path_keeps_its_end)
{
    static char base[4096];
    char path[1200];
    memset(path, 'd', sizeof path);
    memcpy(path, "/", 1);
    strcpy(path + sizeof path - 20, "/the_weights.bin");
    sae_mapped_add(base, sizeof base, path);
    const char *e = explain(base + 100);
    ck_assert_ptr_nonnull(strstr(e, "/the_weights.bin shrank"));
    ck_assert_uint_lt(strlen(e), 768);
    sae_mapped_remove(base);
    ck_assert_ptr_null(strstr(explain(base + 100), "the_weights"));
}
END_TEST

START_TEST(test_small_buffer_is_terminated)
{
    char buf[16];
    size_t n = sae_mapped_explain("saed", NULL, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_uint_lt(n, sizeof buf);
    ck_assert_int_eq(buf[n - 1], '\n');
    ck_assert_uint_eq(sae_mapped_explain("saed", NULL, buf, 1), 0);
}
END_TEST

/* More mappings than one chunk of the registry holds (64): a server of a
 * whole release maps hundreds of weights files. Every one is named, watched
 * and absorbed as the first 64 are; removed, their slots serve again. */
#define MANY 200

START_TEST(test_past_one_chunk)
{
    static char *path[MANY];
    static unsigned char *map[MANY];
    static int fd[MANY];
    unsigned char page[4096];
    for (size_t i = 0; i < MANY; i++) {
        ck_assert_int_ge(asprintf(&path[i], "%s/w%03zu.bin", unit_dir, i), 0);
        memset(page, (int)(i % 251) + 1, sizeof page);
        fd[i] = open(path[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd[i], 0);
        ck_assert_int_eq(write(fd[i], page, sizeof page), (ssize_t)sizeof page);
        map[i] = mmap(NULL, sizeof page, PROT_READ, MAP_PRIVATE, fd[i], 0);
        ck_assert_ptr_ne(map[i], MAP_FAILED);
        sae_mapped_add(map[i], sizeof page, path[i]);
        ck_assert_int_eq(sae_mapped_watch(map[i], fd[i]), 0);
    }
    for (size_t i = 0; i < MANY; i++) {
        ck_assert_ptr_nonnull(strstr(explain(map[i] + 4095), path[i]));
        ck_assert(!sae_mapped_changed(map[i]));
    }
    /* A rewrite in place past the first chunk is seen, and only there. */
    memset(page, 0xee, 16);
    ck_assert_int_eq(pwrite(fd[150], page, 16, 4096), 16);
    for (size_t i = 0; i < MANY; i++)
        ck_assert_int_eq(sae_mapped_changed(map[i]), i == 150);
    /* A lost page past the first chunk is absorbed: zeros, and damaged. */
    ck_assert(sae_mapped_absorb(map[MANY - 1] + 100));
    ck_assert_int_eq(map[MANY - 1][100], 0);
    ck_assert(sae_mapped_changed(map[MANY - 1]));
    ck_assert(!sae_mapped_changed(map[MANY - 2]));
    for (size_t i = 0; i < MANY; i++)
        sae_mapped_remove(map[i]);
    for (size_t i = 0; i < MANY; i++) {
        ck_assert_ptr_null(strstr(explain(map[i]), path[i]));
        ck_assert(!sae_mapped_absorb(map[i]));
    }
    /* The freed slots take new mappings, each found again. */
    for (size_t i = 0; i < MANY; i++)
        sae_mapped_add(map[i], 4096, path[MANY - 1 - i]);
    for (size_t i = 0; i < MANY; i++) {
        ck_assert_ptr_nonnull(strstr(explain(map[i] + 1), path[MANY - 1 - i]));
        sae_mapped_remove(map[i]);
    }
    for (size_t i = 0; i < MANY; i++) {
        munmap(map[i], 4096);
        close(fd[i]);
        free(path[i]);
    }
}
END_TEST

/* One of the threads of test_threads_grow_it_together: adds its own MANY
 * fake mappings (the registry grows under several adders at once), checks
 * each is found, and removes them, three times over. */
static void *adder(void *arg)
{
    uintptr_t base = (uintptr_t)arg;
    char p[64];
    int bad = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < MANY; i++) {
            snprintf(p, sizeof p, "/t%lx/m%zu", (unsigned long)base, i);
            sae_mapped_add((void *)(base + i * 4096), 4096, p);
        }
        for (size_t i = 0; i < MANY; i++) {
            char buf[256];
            snprintf(p, sizeof p, "/t%lx/m%zu shrank", (unsigned long)base, i);
            sae_mapped_explain("t", (void *)(base + i * 4096 + 7), buf, sizeof buf);
            bad += !strstr(buf, p);
        }
        for (size_t i = 0; i < MANY; i++)
            sae_mapped_remove((void *)(base + i * 4096));
    }
    return (void *)(intptr_t)bad;
}

START_TEST(test_threads_grow_it_together)
{
    pthread_t t[4];
    for (uintptr_t k = 0; k < 4; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, adder, (void *)((k + 1) << 32)), 0);
    for (size_t k = 0; k < 4; k++) {
        void *bad;
        pthread_join(t[k], &bad);
        ck_assert_int_eq((intptr_t)bad, 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("mapped");
    TCase *t = tcase_create("mapped");
    tcase_add_checked_fixture(t, unit_setup, unit_teardown);
    tcase_add_test(t, test_weights_named_while_open);
    tcase_add_test(t, test_activations_named_while_open);
    tcase_add_test(t, test_long_path_keeps_its_end);
    tcase_add_test(t, test_small_buffer_is_terminated);
    tcase_add_test(t, test_past_one_chunk);
    tcase_add_test(t, test_threads_grow_it_together);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
