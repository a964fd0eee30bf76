/* test_list.c: the comma-list reader (core/io/list.c) that saed's config,
 * its HTTP header lists and include=, and sae's --layers all use. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "io/list.h"
#include "unit.h"

/* The items of s joined as "[a][b]..." into out. */
static const char *items(const char *s, char *out, size_t cap)
{
    sae_list it = sae_list_of(s);
    const char *p;
    size_t n, used = 0;
    out[0] = '\0';
    while (sae_list_next(&it, &p, &n))
        used += (size_t)snprintf(out + used, cap - used, "[%.*s]", (int)n, p);
    return out;
}

START_TEST(test_items_are_trimmed_and_empty_ones_kept)
{
    char buf[128];
    ck_assert_str_eq(items("a,b", buf, sizeof buf), "[a][b]");
    ck_assert_str_eq(items(" a , \tb\t", buf, sizeof buf), "[a][b]");
    ck_assert_str_eq(items("a,,b", buf, sizeof buf), "[a][][b]");
    ck_assert_str_eq(items("a,", buf, sizeof buf), "[a][]");
    ck_assert_str_eq(items(",", buf, sizeof buf), "[][]");
    ck_assert_str_eq(items("  ", buf, sizeof buf), "[]");
    ck_assert_str_eq(items("text/html;q=0.9, */*", buf, sizeof buf), "[text/html;q=0.9][*/*]");
}
END_TEST

START_TEST(test_empty_and_null_are_empty_lists)
{
    char buf[16];
    ck_assert_str_eq(items("", buf, sizeof buf), "");
    ck_assert_str_eq(items(NULL, buf, sizeof buf), "");
    sae_list it = sae_list_of("x");
    const char *p;
    size_t n;
    ck_assert(sae_list_next(&it, &p, &n));
    ck_assert(!sae_list_next(&it, &p, &n));
    ck_assert(!sae_list_next(&it, &p, &n)); /* stays at the end */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("list");
    TCase *tc = tcase_create("list");
    tcase_add_test(tc, test_items_are_trimmed_and_empty_ones_kept);
    tcase_add_test(tc, test_empty_and_null_are_empty_lists);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
