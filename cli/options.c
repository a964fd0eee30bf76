/* options.c: the option-table parser and the --help built from the same
 * table (options.h). */
#include <assert.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sae/model.h"

/* The most options one subcommand declares (train has about thirty). */
#define CLI_MAX_OPTS 64

int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    /* strtod alone would take " 1", "0x10" and "infinity". */
    if (!s || !*s || strspn(s, "0123456789+-.eE") != strlen(s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_compute(const char *value, void *dst)
{
    sae_compute c;
    if (sae_compute_parse(value, &c))
        return -1;
    if (dst)
        *(sae_compute *)dst = c;
    return 0;
}

/* True for an argument that is an option ("-q", "--name"), not a file: it
 * starts with '-' and is not "-" alone. A list of files ends at the first
 * one, so a mistyped flag is reported as unknown rather than opened. */
static bool is_option(const char *s)
{
    return s[0] == '-' && s[1] != '\0';
}

/* The value of the option at argv[i]: argv[i + 1], or NULL when there is none
 * or it starts with "--" ("--model --out x" is a missing folder, not one named
 * "--out"). A negative number such as "-0.5" is a value. */
static const char *value_of(int argc, char **argv, int i)
{
    if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))
        return NULL;
    return argv[i + 1];
}

/* How messages name an option: "--top-k", or the operands' "SHARD.db...". */
static void name_of(const cli_opt *o, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", o->name ? o->name : o->arg, !o->name && o->count ? "..." : "");
}

/* What a valid value of o is, for "--top-k needs <want>". */
static void want_of(const cli_opt *o, char *buf, size_t n)
{
    switch (o->type) {
    case CLI_U64:
        if (o->hi == UINT64_MAX && o->lo <= 1)
            snprintf(buf, n, "a %s integer", o->lo ? "positive" : "non-negative");
        else
            snprintf(buf, n, "an integer in [%llu, %llu]", (unsigned long long)o->lo,
                     (unsigned long long)o->hi);
        return;
    case CLI_DOUBLE:
        if (o->dlo <= -FLT_MAX && o->dhi >= FLT_MAX)
            snprintf(buf, n, "a finite number");
        else
            snprintf(buf, n, "a number in [%g, %g]", o->dlo, o->dhi);
        return;
    case CLI_STRING:
        snprintf(buf, n, "1 to %zu characters", o->size - 1);
        return;
    case CLI_PARSE:
        snprintf(buf, n, "%s", o->want);
        return;
    default:
        snprintf(buf, n, "a value");
    }
}

/* Writes v into the unsigned field of `size` bytes at p. */
static void store_uint(void *p, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    switch (size) {
    case 1:
        memcpy(p, &u8, 1);
        break;
    case 2:
        memcpy(p, &u16, 2);
        break;
    case 4:
        memcpy(p, &u32, 4);
        break;
    default:
        assert(size == 8);
        memcpy(p, &v, 8);
    }
}

/* Reads value v of o into slot (NULL: checked, not kept). 0, or -1 when v is
 * not a valid value. */
static int put(const cli_opt *o, const char *v, char *slot)
{
    uint64_t u;
    double d;
    size_t len;
    switch (o->type) {
    case CLI_PATH:
    case CLI_LIST:
        if (slot)
            *(const char **)slot = v;
        return 0;
    case CLI_STRING:
        len = strlen(v);
        if (len == 0 || len >= o->size)
            return -1;
        if (slot)
            memcpy(slot, v, len + 1);
        return 0;
    case CLI_U64:
        if (cli_parse_u64(v, o->lo, o->hi, &u))
            return -1;
        if (slot)
            store_uint(slot, o->size, u);
        return 0;
    case CLI_DOUBLE:
        if (cli_parse_double(v, o->dlo, o->dhi, &d))
            return -1;
        if (slot && o->size == sizeof(float))
            *(float *)slot = (float)d;
        else if (slot)
            *(double *)slot = d;
        return 0;
    case CLI_PARSE:
        return o->parse(v, slot);
    case CLI_FLAG:
        break;
    }
    return -1;
}

/* Takes one value v of o: stored at dst, or appended when o is repeatable.
 * Returns -1 to go on, or the usage exit code after saying what is wrong. */
static int take(const cli_spec *s, const cli_opt *o, const char *v)
{
    char what[64], want[128];
    name_of(o, what, sizeof what);
    char *slot = o->dst;
    if (o->count) {
        if (*o->count >= o->max)
            return cli_usage(s->cmd, "at most %zu %s values", o->max, what);
        if (slot)
            slot += *o->count * o->size;
    }
    if (put(o, v, slot)) {
        want_of(o, want, sizeof want);
        return cli_usage(s->cmd, "%s needs %s, not '%s'", what, want, v);
    }
    if (o->count)
        (*o->count)++;
    if (o->given)
        *o->given = true;
    return -1;
}

/* The option named `name`, or the operands' entry for name NULL; NULL when
 * there is none. */
static const cli_opt *find(const cli_spec *s, const char *name)
{
    for (size_t k = 0; k < s->n_opts; k++) {
        const char *n = s->opts[k].name;
        if (name ? n && !strcmp(n, name) : !n)
            return &s->opts[k];
    }
    return NULL;
}

/* After the walk: every required option seen, or one message naming all the
 * missing ones ("--model, --tokens and --out are required"). */
static int check_required(const cli_spec *s, const bool *seen)
{
    char list[512] = "", name[64];
    size_t n_missing = 0, len = 0, last = 0;
    for (size_t k = 0; k < s->n_opts; k++) {
        if (!s->opts[k].required || seen[k])
            continue;
        name_of(&s->opts[k], name, sizeof name);
        last = len;
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", n_missing ? ", " : "", name);
        if (len >= sizeof list)
            len = sizeof list - 1;
        n_missing++;
    }
    if (n_missing == 0)
        return -1;
    if (n_missing == 1)
        return cli_usage(s->cmd, "%s is required", list);
    /* the last ", " becomes " and " */
    list[last] = '\0';
    return cli_usage(s->cmd, "%s and %s are required", list, list + last + 2);
}

int cli_parse(const cli_spec *s, int argc, char **argv)
{
    bool seen[CLI_MAX_OPTS] = {false};
    assert(s->n_opts <= CLI_MAX_OPTS);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_help(s, stdout);
            return SAE_EXIT_OK;
        }
        const cli_opt *o = find(s, is_option(a) ? a : NULL);
        if (!o && is_option(a))
            return cli_usage(s->cmd, "unknown option '%s'", a);
        if (!o)
            return cli_usage(s->cmd, "unexpected argument '%s'", a);
        size_t k = (size_t)(o - s->opts);
        int rc = -1;
        if (!o->name) {
            /* an operand: one, unless repeatable */
            if (seen[k] && !o->count)
                return cli_usage(s->cmd, "one %s only (got '%s' and '%s')", o->arg,
                                 *(const char **)o->dst, a);
            rc = take(s, o, a);
        } else if (o->type == CLI_FLAG) {
            if (o->dst)
                *(bool *)o->dst = true;
            if (o->given)
                *o->given = true;
        } else if (o->type == CLI_LIST) {
            size_t before = *o->count;
            while (rc < 0 && i + 1 < argc && !is_option(argv[i + 1]))
                rc = take(s, o, argv[++i]);
            if (rc < 0 && *o->count == before)
                return cli_usage(s->cmd, "%s needs at least one %s", o->name, o->arg);
        } else {
            const char *v = value_of(argc, argv, i);
            if (!v)
                return cli_usage(s->cmd, "%s needs a value", o->name);
            i++;
            rc = take(s, o, v);
        }
        if (rc >= 0)
            return rc;
        seen[k] = true;
    }
    return check_required(s, seen);
}

/* How --help shows an option: "--top-k K", "--activations FILE...". */
static void label_of(const cli_opt *o, char *buf, size_t n)
{
    if (!o->name)
        name_of(o, buf, n);
    else
        snprintf(buf, n, "%s%s%s%s", o->name, o->type == CLI_FLAG ? "" : " ",
                 o->type == CLI_FLAG ? "" : o->arg, o->type == CLI_LIST ? "..." : "");
}

void cli_help(const cli_spec *s, FILE *out)
{
    char label[64];
    int col = 0;
    fprintf(out, "%s\n%s", s->usage, s->about);
    for (size_t k = 0; k < s->n_opts; k++)
        if (s->opts[k].help) {
            label_of(&s->opts[k], label, sizeof label);
            col = (int)strlen(label) > col ? (int)strlen(label) : col;
        }
    if (col)
        fputc('\n', out);
    for (size_t k = 0; k < s->n_opts; k++) {
        const char *h = s->opts[k].help;
        if (!h)
            continue;
        label_of(&s->opts[k], label, sizeof label);
        fprintf(out, "  %-*s", col, label);
        /* each line of the help text in the column after the labels */
        for (const char *nl; h; h = nl ? nl + 1 : NULL) {
            nl = strchr(h, '\n');
            int len = nl ? (int)(nl - h) : (int)strlen(h);
            fprintf(out, "%*s%.*s\n", h == s->opts[k].help ? 2 : col + 4, "", len, h);
        }
    }
}
