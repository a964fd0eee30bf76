/* harvest.c: `sae harvest`, text through a language model into activation
 * files and their tokens file (CONTRACT section 1; docs/LM.md, "Harvesting"),
 * and the feed behind it that `sae index --lm` also reads (harvest.h). */
#include "harvest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "io/outfile.h"
#include "lm/bpe.h"
#include "lm/textin.h"
#include "sae/model.h"

/* Most hooks one harvest reads. */
#define HARVEST_MAX_HOOKS 64

/* A feed: the model, its tokenizer and scratch, the text being read, the
 * windower, and the current batch. Owns everything but the options' strings. */
struct lm_feed {
    lm_feed_opts o;
    sae_lm_hook *hooks;         /* owned copy (o.n_hooks) */
    sae_lm *lm;
    sae_bpe *bpe;
    sae_lm_ws *ws;              /* for batch x context tokens */
    sae_windower win;
    size_t *pos, n_pos;         /* kept positions (n_pos of context) */
    size_t batch;               /* windows per batch */
    size_t file;                /* the text file being read */
    sae_text_reader *rd;        /* it, open; NULL between files */
    int32_t *doc_ids;           /* owned: the document being windowed */
    bool doc_open;              /* doc_ids is in the windower */
    uint32_t *ids;              /* (batch, context) the batch's windows */
    uint64_t *win_doc;          /* (batch) each window's first document */
    size_t n_win;               /* windows in the batch */
    uint64_t first_win;         /* the number of the batch's first window */
    float **acts;               /* per hook (batch x context, width) */
    size_t *width;              /* per hook */
    uint64_t docs, tokens;      /* documents read; tokens given (windows x context) */
    /* lm_feed_read_rows: the batch's rows are [row0, row0 + rows) */
    uint64_t row0, rows;
    bool ran;                   /* the batch went through the model */
};

long lm_parse_hooks(const char *list, sae_lm_hook *hooks, size_t cap, sae_error *err)
{
    size_t n = 0;
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char name[256];
        if (!len || len >= sizeof name) {
            sae_error_set(err, SAE_EINVAL, "--hook: \"%s\": an empty or too long name", list);
            return -1;
        }
        if (n == cap) {
            sae_error_set(err, SAE_EINVAL, "--hook: more than %zu hooks", cap);
            return -1;
        }
        memcpy(name, s, len);
        name[len] = '\0';
        if (sae_lm_hook_parse(name, &hooks[n], err))
            return -1;
        for (size_t k = 0; k < n; k++)
            if (hooks[k].site == hooks[n].site && hooks[k].layer == hooks[n].layer) {
                sae_error_set(err, SAE_EINVAL, "--hook: %s is named twice", name);
                return -1;
            }
        n++;
        if (!comma)
            return (long)n;
        s = comma + 1;
    }
}

void lm_feed_free(lm_feed *f)
{
    if (!f)
        return;
    for (size_t h = 0; f->acts && h < f->o.n_hooks; h++)
        free(f->acts[h]);
    free(f->acts);
    free(f->width);
    free(f->ids);
    free(f->win_doc);
    free(f->doc_ids);
    free(f->pos);
    free(f->hooks);
    sae_text_close(f->rd);
    sae_windower_free(&f->win);
    sae_lm_ws_free(f->ws);
    sae_bpe_free(f->bpe);
    sae_lm_free(f->lm);
    free(f);
}

/* Resolves the BOS and separator against the tokenizer and checks the
 * windows against the model. */
static int feed_windows(lm_feed *f, sae_error *err)
{
    sae_window_opts *w = &f->o.win;
    const sae_lm_config *c = sae_lm_config_of(f->lm);
    if (w->bos < 0)
        w->bos = sae_bpe_bos(f->bpe);
    if (f->o.sep_is_bos)
        w->sep = sae_bpe_bos(f->bpe);
    if (sae_window_opts_check(w, err))
        return -1;
    if (w->context > c->n_ctx)
        return sae_error_set(err, SAE_EINVAL,
                             "context size %zu: the model %s knows %zu positions (n_positions)",
                             w->context, f->o.lm_dir, c->n_ctx);
    if ((w->bos >= 0 && (size_t)w->bos >= c->vocab) || (w->sep >= 0 && (size_t)w->sep >= c->vocab))
        return sae_error_set(err, SAE_EINVAL, "the BOS or separator id is past the vocabulary of %s",
                             f->o.lm_dir);
    return sae_windower_init(&f->win, w, err);
}

int lm_feed_open(const lm_feed_opts *o, lm_feed **out, sae_error *err)
{
    *out = NULL;
    lm_feed *f = calloc(1, sizeof *f);
    if (!f)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    f->o = *o;
    int rc = -1;
    if (sae_lm_load(o->lm_dir, &f->lm, err) || sae_bpe_load(&f->bpe, o->lm_dir, err) ||
        feed_windows(f, err))
        goto out;
    const sae_lm_config *c = sae_lm_config_of(f->lm);
    if (sae_bpe_vocab_size(f->bpe) > c->vocab) {
        sae_error_set(err, SAE_EINVAL,
                      "--lm %s: the tokenizer has ids up to %zu but the model's vocabulary is %zu",
                      o->lm_dir, sae_bpe_vocab_size(f->bpe) - 1, c->vocab);
        goto out;
    }
    size_t ctx = f->o.win.context;
    f->batch = o->batch ? o->batch : (ctx < 2048 ? 2048 / ctx : 1);
    f->hooks = calloc(o->n_hooks, sizeof *f->hooks);
    f->acts = calloc(o->n_hooks, sizeof *f->acts);
    f->width = calloc(o->n_hooks, sizeof *f->width);
    f->pos = calloc(ctx, sizeof *f->pos);
    f->ids = calloc(f->batch * ctx, sizeof *f->ids);
    f->win_doc = calloc(f->batch, sizeof *f->win_doc);
    if (!f->hooks || !f->acts || !f->width || !f->pos || !f->ids || !f->win_doc) {
        sae_error_set(err, SAE_ENOMEM, "out of memory for a batch of %zu windows", f->batch);
        goto out;
    }
    f->n_pos = sae_window_positions(&f->o.win, f->pos);
    for (size_t h = 0; h < o->n_hooks; h++) {
        f->hooks[h] = o->hooks[h];
        if (sae_lm_hook_check(f->lm, &f->hooks[h], err))
            goto out;
        f->width[h] = sae_lm_hook_width(f->lm, &f->hooks[h]);
        if (!(f->acts[h] = malloc(f->batch * ctx * f->width[h] * sizeof(float)))) {
            sae_error_set(err, SAE_ENOMEM, "out of memory for a batch of %zu windows", f->batch);
            goto out;
        }
    }
    f->o.hooks = f->hooks;
    if (!(f->ws = sae_lm_ws_new(f->lm, f->batch * ctx))) {
        sae_error_set(err, SAE_ENOMEM, "out of memory for the model's scratch (%zu tokens)",
                      f->batch * ctx);
        goto out;
    }
    rc = 0;
out:
    if (rc)
        lm_feed_free(f);
    else
        *out = f;
    return rc;
}

int lm_window_opts_of_sae(const char *sae_dir, lm_feed_opts *o, sae_error *err)
{
    sae_window_opts_default(&o->win);
    o->sep_is_bos = true;
    if (!sae_dir)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/cfg.json", sae_dir);
    return sae_window_opts_read_cfg(path, &o->win, &o->sep_is_bos, err);
}

int lm_feed_rewind(lm_feed *f, sae_error *err)
{
    sae_text_close(f->rd);
    f->rd = NULL;
    f->file = 0;
    free(f->doc_ids);
    f->doc_ids = NULL;
    f->doc_open = false;
    f->n_win = 0;
    f->first_win = f->docs = f->tokens = f->row0 = f->rows = 0;
    f->ran = false;
    sae_windower_free(&f->win);
    return sae_windower_init(&f->win, &f->o.win, err);
}

/* Reads and tokenizes the next document into the windower: 1, 0 when every
 * file is read, -1. */
static int next_doc(lm_feed *f, sae_error *err)
{
    for (;;) {
        if (!f->rd) {
            if (f->file == f->o.n_texts)
                return 0;
            if (sae_text_open(f->o.texts[f->file], &f->rd, err))
                return -1;
        }
        const char *text;
        size_t len, n;
        int rc = sae_text_next(f->rd, &text, &len, err);
        if (rc < 0)
            return -1;
        if (!rc) {
            sae_text_close(f->rd);
            f->rd = NULL;
            f->file++;
            continue;
        }
        free(f->doc_ids);
        f->doc_ids = NULL;
        /* As TransformerLens' to_tokens: added tokens in the text are matched. */
        if (sae_bpe_encode(f->bpe, text, len, SAE_BPE_SPECIAL, &f->doc_ids, &n, err))
            return -1;
        sae_windower_doc(&f->win, f->doc_ids, n);
        f->doc_open = true;
        f->docs++;
        return 1;
    }
}

/* Fills the batch with the next windows (without running the model). */
static long fill(lm_feed *f, sae_error *err)
{
    size_t ctx = f->o.win.context;
    f->first_win += f->n_win;
    f->row0 += f->rows;
    f->n_win = 0;
    f->rows = 0;
    f->ran = false;
    while (f->n_win < f->batch) {
        if (f->doc_open) {
            const uint32_t *w;
            uint64_t doc;
            if (sae_windower_next(&f->win, &w, &doc)) {
                memcpy(f->ids + f->n_win * ctx, w, ctx * sizeof *w);
                f->win_doc[f->n_win++] = doc;
                continue;
            }
            f->doc_open = false;
        }
        int rc = next_doc(f, err);
        if (rc < 0)
            return -1;
        if (!rc)
            break;
    }
    f->rows = f->n_win * f->n_pos;
    f->tokens += f->n_win * ctx;
    return (long)f->n_win;
}

/* Runs the batch through the model and keeps the kept positions' rows, in
 * place: row i of window w moves from w*context + pos[i] to w*n_pos + i,
 * never forward. */
static int forward(lm_feed *f, sae_error *err)
{
    size_t ctx = f->o.win.context;
    if (!f->n_win || f->ran)
        return 0;
    sae_lm_batch b = {.ids = f->ids, .n_seq = f->n_win, .seq_len = ctx};
    if (sae_lm_forward(f->lm, f->ws, &b, f->hooks, f->o.n_hooks, f->acts, NULL, err))
        return -1;
    if (f->n_pos < ctx)
        for (size_t h = 0; h < f->o.n_hooks; h++) {
            size_t wd = f->width[h];
            for (size_t w = 0; w < f->n_win; w++)
                for (size_t i = 0; i < f->n_pos; i++)
                    memmove(f->acts[h] + (w * f->n_pos + i) * wd,
                            f->acts[h] + (w * ctx + f->pos[i]) * wd, wd * sizeof(float));
        }
    f->ran = true;
    return 0;
}

long lm_feed_next(lm_feed *f, bool run, sae_error *err)
{
    long n = fill(f, err);
    if (n > 0 && run && forward(f, err))
        return -1;
    return n;
}

const sae_window_opts *lm_feed_window(const lm_feed *f)
{
    return &f->o.win;
}

size_t lm_feed_rows_per_window(const lm_feed *f)
{
    return f->n_pos;
}

size_t lm_feed_width(const lm_feed *f, size_t h)
{
    return f->width[h];
}

const float *lm_feed_rows(const lm_feed *f, size_t h)
{
    return f->acts[h];
}

void lm_feed_counts(const lm_feed *f, uint64_t *docs, uint64_t *windows, uint64_t *tokens)
{
    *docs = f->docs;
    *windows = f->first_win + f->n_win;
    *tokens = f->tokens;
}

/* Length of the whole UTF-8 sequence at s[0 .. n) (no overlong form, no
 * surrogate, at most U+10FFFF), or 0 when s does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!k || k > n)
        return 0;
    uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

/* Writes s[0 .. n) as a JSON string: whole UTF-8 as it is, every other byte
 * as U+FFFD, quotes, backslashes and control characters escaped. */
static void put_json_bytes(FILE *fp, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    putc('"', fp);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(u + i, n - i);
        if (!k) {
            fputs("\xef\xbf\xbd", fp);
            i++;
        } else if (k == 1 && (u[i] < 0x20 || u[i] == '"' || u[i] == '\\')) {
            const char *esc = u[i] == '"' ? "\\\"" : u[i] == '\\' ? "\\\\" : u[i] == '\n' ? "\\n"
                            : u[i] == '\t' ? "\\t" : u[i] == '\r' ? "\\r" : NULL;
            if (esc)
                fputs(esc, fp);
            else
                fprintf(fp, "\\u%04x", u[i]);
            i++;
        } else {
            fwrite(u + i, 1, k, fp);
            i += k;
        }
    }
    putc('"', fp);
}

void lm_feed_put_tokens(const lm_feed *f, FILE *fp)
{
    size_t ctx = f->o.win.context;
    for (size_t w = 0; w < f->n_win; w++) {
        const uint32_t *ids = f->ids + w * ctx;
        fprintf(fp, "{\"id\":\"%llu\",\"doc\":%llu,\"ids\":[",
                (unsigned long long)(f->first_win + w), (unsigned long long)f->win_doc[w]);
        for (size_t i = 0; i < f->n_pos; i++)
            fprintf(fp, i ? ",%u" : "%u", ids[f->pos[i]]);
        fputs("],\"tokens\":[", fp);
        for (size_t i = 0; i < f->n_pos; i++) {
            size_t len = 0;
            const char *s = sae_bpe_token(f->bpe, (int32_t)ids[f->pos[i]], &len);
            if (i)
                putc(',', fp);
            put_json_bytes(fp, s ? s : "", s ? len : 0);
        }
        fputs("]}\n", fp);
    }
}

/* The error of a text that gives no whole window. */
static int no_window(const lm_feed *f, sae_error *err)
{
    return sae_error_set(err, SAE_EINVAL,
                         "the text (%llu documents) gives no whole window of %zu tokens: SAELens "
                         "drops the last, partial window (give more text or a smaller context "
                         "size)",
                         (unsigned long long)f->docs, f->o.win.context);
}

int lm_feed_write_tokens(lm_feed *f, const char *path, bool quiet, sae_error *err)
{
    sae_outfile out;
    if (sae_outfile_open(&out, path, err))
        return -1;
    cli_progress prog;
    cli_progress_start(&prog, "tokenize", "tokens", 0, quiet);
    long n;
    while ((n = lm_feed_next(f, false, err)) > 0) {
        lm_feed_put_tokens(f, out.fp);
        cli_progress_update(&prog, f->tokens);
    }
    if (!n && !f->first_win) {
        no_window(f, err);
        n = -1;
    }
    if (n < 0) {
        sae_outfile_abort(&out);
        return -1;
    }
    cli_progress_finish(&prog, f->tokens);
    return sae_outfile_commit(&out, err);
}

int lm_feed_read_rows(void *ctx, uint64_t row0, size_t n, float *dst, sae_error *err)
{
    lm_feed *f = ctx;
    size_t wd = f->width[0];
    while (n) {
        if (row0 < f->row0)
            return sae_error_set(err, SAE_EINVAL, "row %llu asked for after row %llu",
                                 (unsigned long long)row0, (unsigned long long)f->row0);
        if (row0 >= f->row0 + f->rows) {
            long got = fill(f, err);
            if (got < 0)
                return -1;
            if (!got)
                return sae_error_set(err, SAE_EDIM,
                                     "the text gives %llu rows; row %llu was asked for (did the "
                                     "text files change?)",
                                     (unsigned long long)f->row0, (unsigned long long)row0);
            continue;
        }
        if (forward(f, err))
            return -1;
        size_t at = (size_t)(row0 - f->row0), k = (size_t)(f->rows - at);
        if (k > n)
            k = n;
        memcpy(dst, f->acts[0] + at * wd, k * wd * sizeof *dst);
        dst += k * wd;
        row0 += k;
        n -= k;
    }
    return 0;
}

/* ---- sae harvest ---- */

/* Bytes of the .npy header harvest writes: magic, version, length, the dict
 * padded with spaces to fit any 64-bit shape, a multiple of 64. */
#define NPY_HEADER 128

/* Writes the .npy header of a (rows, cols) little-endian float32 array. */
static void npy_header(FILE *fp, uint64_t rows, size_t cols)
{
    char h[NPY_HEADER];
    memset(h, ' ', sizeof h);
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)(NPY_HEADER - 10);
    h[9] = 0;
    int k = snprintf(h + 10, NPY_HEADER - 10,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu, %zu), }",
                     (unsigned long long)rows, cols);
    h[10 + k] = ' ';
    h[NPY_HEADER - 1] = '\n';
    fwrite(h, 1, sizeof h, fp);
}

/* The parsed flags; strings borrowed from argv. */
typedef struct harvest_args {
    const char *lm, *hooks, *out, *sae;
    const char **texts;         /* owned array of borrowed strings */
    size_t n_texts;
    uint64_t context, batch;
    int bos;                    /* -1 not given, 0 no, 1 yes */
    int64_t sep;                /* -3 not given, -2 bos, -1 none, else an id */
    bool no_concat, quiet;
} harvest_args;

static const char harvest_usage[] =
    "usage: sae harvest --lm DIR --text FILE... --out DIR [--hook NAME[,NAME...]]\n"
    "                   [--sae DIR] [--context-size N] [--prepend-bos yes|no]\n"
    "                   [--separator bos|none|ID] [--no-concat] [--batch N] [--quiet]\n";
static const char harvest_about[] =
    "Runs text through a GPT-2-family checkpoint and writes, for each hook, the\n"
    "activations of every token as DIR/<hook>.npy (float32, tokens x width), and\n"
    "DIR/tokens.jsonl, what `sae index --tokens` and `sae train` read. Documents are\n"
    "tokenized and packed into windows as SAELens' ActivationsStore does: each\n"
    "window starts with the BOS, documents within one are parted by the separator,\n"
    "a document goes on into the next window, the last partial window is dropped\n"
    "(docs/LM.md). --sae takes the hook, context_size, prepend_bos and\n"
    "seqpos_slice from that SAE's cfg.json; flags given override it.\n";

/* "yes" / "no" into an int. */
static int parse_yes_no(const char *s, void *dst)
{
    int *v = dst;
    if (!strcmp(s, "yes") || !strcmp(s, "true"))
        *v = 1;
    else if (!strcmp(s, "no") || !strcmp(s, "false"))
        *v = 0;
    else
        return -1;
    return 0;
}

/* "bos", "none" or a token id into an int64. */
static int parse_separator(const char *s, void *dst)
{
    int64_t *v = dst;
    uint64_t id;
    if (!strcmp(s, "bos") || !strcmp(s, "eos"))
        *v = -2;
    else if (!strcmp(s, "none"))
        *v = -1;
    else if (!cli_parse_u64(s, 0, INT32_MAX, &id))
        *v = (int64_t)id;
    else
        return -1;
    return 0;
}

/* Parses argv into a; -1 to go on, or an exit code. */
static int harvest_parse(int argc, char **argv, harvest_args *a)
{
    a->bos = -1;
    a->sep = -3;
    if (!(a->texts = calloc((size_t)argc, sizeof *a->texts)))
        return cli_fail("out of memory");
    const cli_opt opts[] = {
        {"--lm", CLI_PATH, "DIR", CLI_TO(a->lm), .required = true,
         .help = "the language model: a Hugging Face GPT-2 checkpoint folder\n"
                 "(config.json, model.safetensors, tokenizer.json)"},
        {"--text", CLI_LIST, "FILE", CLI_TO(a->texts[0]), .count = &a->n_texts,
         .max = (size_t)argc, .required = true,
         .help = "text files, read in order: .jsonl/.ndjson/.json are JSON Lines\n"
                 "with a \"text\" string a line; any other file is one document a line"},
        {"--out", CLI_PATH, "DIR", CLI_TO(a->out), .required = true,
         .help = "the folder to write (made if missing)"},
        {"--hook", CLI_PATH, "NAME[,NAME...]", CLI_TO(a->hooks),
         .help = "TransformerLens hook names (default: the --sae's hook_name)"},
        {"--sae", CLI_PATH, "DIR", CLI_TO(a->sae),
         .help = "an SAE folder: its hook, context_size, prepend_bos and\n"
                 "seqpos_slice (cfg.json) set the defaults"},
        {"--context-size", CLI_U64, "N", CLI_TO(a->context), .lo = 2,
         .hi = SAE_WINDOW_MAX_CONTEXT, .help = "tokens per window (default 128, SAELens')"},
        {"--prepend-bos", CLI_PARSE, "yes|no", .dst = &a->bos, .parse = parse_yes_no,
         .want = "yes or no", .help = "start every window with the BOS (default yes)"},
        {"--separator", CLI_PARSE, "bos|none|ID", .dst = &a->sep, .parse = parse_separator,
         .want = "bos, eos, none or a token id",
         .help = "the token between two documents in a window (default bos)"},
        {"--no-concat", CLI_FLAG, CLI_TO(a->no_concat),
         .help = "one window per document, shorter ones dropped\n"
                 "(SAELens' disable_concat_sequences)"},
        {"--batch", CLI_U64, "N", CLI_TO(a->batch), .lo = 1, .hi = 1 << 20,
         .help = "windows per forward pass (default: 2048 tokens' worth)"},
        {"--quiet", CLI_FLAG, CLI_TO(a->quiet), .help = "no progress on stderr"},
    };
    const cli_spec spec = {.cmd = "harvest", .usage = harvest_usage, .about = harvest_about,
                           CLI_OPTS(opts)};
    int parsed = cli_parse(&spec, argc, argv);
    if (parsed >= 0)
        return parsed;
    if (!a->hooks && !a->sae)
        return cli_usage("harvest", "--hook is required (or --sae, whose hook it takes)");
    return -1;
}

/* The window settings: SAELens' defaults, then the --sae's cfg.json, then
 * the flags given. */
static int harvest_windows(const harvest_args *a, const sae_model *m, lm_feed_opts *o,
                           sae_error *err)
{
    if (lm_window_opts_of_sae(m ? m->dir : NULL, o, err))
        return -1;
    if (a->context)
        o->win.context = (size_t)a->context;
    if (a->bos >= 0)
        o->win.prepend_bos = a->bos;
    if (a->sep != -3) {
        o->sep_is_bos = a->sep == -2;
        o->win.sep = a->sep >= 0 ? (int32_t)a->sep : -1;
    }
    if (a->no_concat)
        o->win.no_concat = true;
    o->batch = (size_t)a->batch;
    return 0;
}

/* Makes dir (and not its parents) unless it is a folder already. */
static int make_dir(const char *dir, sae_error *err)
{
    struct stat st;
    if (!stat(dir, &st) && S_ISDIR(st.st_mode))
        return 0;
    if (mkdir(dir, 0777))
        return sae_error_set(err, SAE_EIO, "%s: %s", dir, strerror(errno));
    return 0;
}

/* The whole harvest: one pass over the text, every hook's rows appended to
 * its .npy, the windows to tokens.jsonl; headers written once the row count
 * is known; each file renamed into place only when all went well. */
static int harvest_run(const harvest_args *a, lm_feed *f, const sae_lm_hook *hooks, size_t nh,
                       sae_error *err)
{
    sae_outfile files[HARVEST_MAX_HOOKS + 1];
    memset(files, 0, sizeof files);
    size_t opened = 0;
    int rc = -1;
    char path[4096], name[256];
    if (make_dir(a->out, err))
        return -1;
    for (; opened < nh; opened++) {
        sae_lm_hook_name(&hooks[opened], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s.npy", a->out, name);
        if (sae_outfile_open(&files[opened], path, err))
            goto out;
        npy_header(files[opened].fp, 0, lm_feed_width(f, opened));
    }
    snprintf(path, sizeof path, "%s/tokens.jsonl", a->out);
    if (sae_outfile_open(&files[nh], path, err))
        goto out;
    opened++;
    cli_progress prog;
    cli_progress_start(&prog, "harvest", "tokens", 0, a->quiet);
    uint64_t rows = 0, docs, windows, tokens;
    long n;
    while ((n = lm_feed_next(f, true, err)) > 0) {
        size_t r = (size_t)n * lm_feed_rows_per_window(f);
        for (size_t h = 0; h < nh; h++)
            fwrite(lm_feed_rows(f, h), sizeof(float), r * lm_feed_width(f, h), files[h].fp);
        lm_feed_put_tokens(f, files[nh].fp);
        rows += r;
        lm_feed_counts(f, &docs, &windows, &tokens);
        cli_progress_update(&prog, tokens);
    }
    lm_feed_counts(f, &docs, &windows, &tokens);
    if (n < 0 || (!windows && no_window(f, err)))
        goto out;
    cli_progress_finish(&prog, tokens);
    for (size_t h = 0; h < nh; h++) {
        if (fseek(files[h].fp, 0, SEEK_SET)) {
            sae_error_set(err, SAE_EIO, "%s: %s", files[h].path, strerror(errno));
            goto out;
        }
        npy_header(files[h].fp, rows, lm_feed_width(f, h));
    }
    for (rc = 0; opened && !rc; opened--)
        rc = sae_outfile_commit(&files[nh + 1 - opened], err);
    if (!rc && !a->quiet)
        fprintf(stderr, "harvest: %llu documents, %llu windows of %zu, %llu rows per hook in %s\n",
                (unsigned long long)docs, (unsigned long long)windows, lm_feed_window(f)->context,
                (unsigned long long)rows, a->out);
out:
    for (size_t i = 0; i < nh + 1; i++)
        sae_outfile_abort(&files[i]);
    return rc;
}

int cmd_harvest(int argc, char **argv)
{
    harvest_args a;
    memset(&a, 0, sizeof a);
    int code = harvest_parse(argc, argv, &a);
    sae_model *m = NULL;
    lm_feed *f = NULL;
    sae_lm_hook hooks[HARVEST_MAX_HOOKS];
    sae_error err;
    sae_error_clear(&err);
    if (code >= 0)
        goto out;
    code = SAE_EXIT_FAILURE;
    if (a.sae) {
        sae_model_warnings warn;
        if (sae_model_load(a.sae, &m, &warn, &err))
            goto fail;
    }
    if (!a.hooks && !*m->hook_name) {
        sae_error_set(&err, SAE_EINVAL, "%s: cfg.json names no hook_name; give --hook", a.sae);
        goto fail;
    }
    long nh = lm_parse_hooks(a.hooks ? a.hooks : m->hook_name, hooks, HARVEST_MAX_HOOKS, &err);
    lm_feed_opts o = {.lm_dir = a.lm, .texts = a.texts, .n_texts = a.n_texts, .hooks = hooks,
                      .n_hooks = nh > 0 ? (size_t)nh : 0};
    if (nh < 0 || harvest_windows(&a, m, &o, &err) || lm_feed_open(&o, &f, &err))
        goto fail;
    sae_lm_hook own;
    for (long h = 0; m && h < nh; h++)
        if (!sae_lm_hook_parse(m->hook_name, &own, &err) && own.site == hooks[h].site &&
            own.layer == hooks[h].layer && lm_feed_width(f, (size_t)h) != m->d_in) {
            sae_error_set(&err, SAE_EDIM, "%s: d_in %zu, but %s is %zu wide", a.sae, m->d_in,
                          m->hook_name, lm_feed_width(f, (size_t)h));
            goto fail;
        }
    if (!a.quiet) {
        const sae_window_opts *w = lm_feed_window(f);
        fprintf(stderr,
                "harvest: windows of %zu tokens, %zu rows each; BOS %s; separator %d%s\n",
                w->context, lm_feed_rows_per_window(f), w->prepend_bos ? "first" : "none",
                (int)w->sep, w->no_concat ? "; one window per document" : "");
    }
    if (harvest_run(&a, f, hooks, (size_t)nh, &err))
        goto fail;
    code = SAE_EXIT_OK;
    goto out;
fail:
    code = cli_fail_err(&err);
out:
    lm_feed_free(f);
    sae_model_free(m);
    free(a.texts);
    return code;
}
