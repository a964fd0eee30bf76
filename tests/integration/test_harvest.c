/* test_harvest.c: `sae harvest` and `sae index --lm` as processes, on the
 * tokenizer-carrying random GPT-2 fixture (tests/fixture/lm/gpt2_text_v300).
 *
 *   - the windows in tokens.jsonl are the text's documents, tokenized alone
 *     and packed by a transcription of SAELens' concat_and_batch_sequences
 *     written here (not core/lm/window.c), and `sae index`'s tokens reader
 *     opens the file;
 *   - every row of every hook's .npy is sae_lm_forward's value for that
 *     window's position, run here one window at a time;
 *   - `sae train` trains on a harvested file and `sae index` indexes it;
 *   - `sae index --lm` over the same text gives the same index file, byte for
 *     byte, as harvest-then-index, whole and as a shard;
 *   - --sae takes the hook, context_size and seqpos_slice from cfg.json;
 *   - too little text for one window fails, naming why.
 * The fixture's references at every hook are tests/unit/test_lm.c's. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "index/tokens.h"
#include "io/activations.h"
#include "lm/bpe.h"
#include "lm/lm.h"

static int failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#define CTX 16

static const char *sae_bin;
static char *dir;

/* Runs a shell command line (printf-formatted) in dir; its exit status. */
static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && ", dir);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Whether dir/name holds the text needle. */
static bool file_has(const char *name, const char *needle)
{
    char path[4096], buf[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* dir/name into buf. */
static const char *at(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* The documents: a JSON Lines file and a plain one, with non-Latin text, an
 * empty document, one that starts with <|endoftext|>, and a long one that
 * spans windows. docs[i] holds them in reading order. */
static char *docs[64];
static size_t n_docs;

static void write_texts(void)
{
    static const char *jl[] = {
        "The cat sat on the mat.", "", "<|endoftext|>A document that starts with the BOS.",
        "Ünïcödé, ελληνικά και русский текст, 中文字符 and emoji \xf0\x9f\x98\x80.",
        "tabs\tand  double  spaces,\nnewlines\n\nand a blank line inside one document.",
    };
    char path[4096];
    FILE *f = fopen(at("a.jsonl", path, sizeof path), "w");
    for (size_t i = 0; i < sizeof jl / sizeof jl[0]; i++) {
        json_t *o = json_pack("{s:s, s:i}", "text", jl[i], "n", (int)i);
        char *s = json_dumps(o, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        if (i == 1)
            fputs("\n", f); /* a blank line: no document */
        free(s);
        json_decref(o);
        docs[n_docs++] = strdup(jl[i]);
    }
    fclose(f);
    f = fopen(at("b.txt", path, sizeof path), "w");
    for (int i = 0; i < 40; i++) {
        char line[512];
        snprintf(line, sizeof line,
                 "Line %d of the plain file: the quick brown fox %s jumps over %d lazy dogs.", i,
                 i % 3 ? "never" : "always", i * 7);
        if (i == 20)
            snprintf(line, sizeof line, "%s", "");
        fprintf(f, "%s%s", line, i % 2 ? "\r\n" : "\n");
        docs[n_docs++] = strdup(line);
    }
    fclose(f);
}

/* SAELens' concat_and_batch_sequences with begin_batch = sep = bos,
 * transcribed from its list arithmetic: the windows' ids into win (cap ids);
 * returns how many windows. */
static size_t saelens_windows(const sae_bpe *bpe, int32_t bos, uint32_t *win, size_t cap)
{
    uint32_t batch[CTX];
    size_t len = 0, n_win = 0;
    bool have = false;
    for (size_t d = 0; d < n_docs; d++) {
        int32_t *t;
        size_t n;
        sae_error err;
        if (sae_bpe_encode(bpe, docs[d], strlen(docs[d]), SAE_BPE_SPECIAL, &t, &n, &err))
            abort();
        size_t off = 0;
        while (n > off) {
            uint32_t prefix[1];
            size_t np = 0;
            if (!have) {
                if (t[off] != bos)
                    prefix[np++] = (uint32_t)bos;
                size_t need = CTX - np;
                len = 0;
                for (size_t i = 0; i < np; i++)
                    batch[len++] = prefix[i];
                for (size_t i = off; i < off + need && i < n; i++)
                    batch[len++] = (uint32_t)t[i];
                off += need;
                have = true;
            } else {
                if (t[off] != bos)
                    prefix[np++] = (uint32_t)bos;
                size_t need = CTX - len > np ? CTX - len - np : 0, pneed = CTX - len;
                for (size_t i = 0; i < np && i < pneed; i++)
                    batch[len++] = prefix[i];
                for (size_t i = off; i < off + need && i < n; i++)
                    batch[len++] = (uint32_t)t[i];
                off += need;
            }
            if (len == CTX) {
                if ((n_win + 1) * CTX <= cap)
                    memcpy(win + n_win * CTX, batch, sizeof batch);
                n_win++;
                have = false;
            }
        }
        free(t);
    }
    return n_win;
}

/* The "ids" of every line of a tokens file, flattened into ids (cap). */
static size_t read_ids(const char *path, uint32_t *ids, size_t cap, size_t *lines)
{
    FILE *f = fopen(path, "r");
    char line[65536];
    size_t n = 0;
    *lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL), *a = json_object_get(o, "ids");
        for (size_t i = 0; i < json_array_size(a) && n < cap; i++)
            ids[n++] = (uint32_t)json_integer_value(json_array_get(a, i));
        CHECK(json_array_size(a) == json_array_size(json_object_get(o, "tokens")),
              "line %zu: ids and tokens differ in length", *lines);
        json_decref(o);
        ++*lines;
    }
    if (f)
        fclose(f);
    return n;
}

/* Every row of file (a harvested .npy of hook h) against the forward pass
 * of its window alone, positions pos[0 .. n_pos). */
static void check_rows(const sae_lm *lm, const char *file, const sae_lm_hook *h,
                       const uint32_t *win, size_t n_win, const size_t *pos, size_t n_pos)
{
    sae_acts *acts;
    sae_error err;
    const char *paths[] = {file};
    if (sae_acts_open(paths, 1, &acts, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    size_t w = sae_lm_hook_width(lm, h);
    CHECK(sae_acts_dim(acts) == w && sae_acts_rows(acts) == n_win * n_pos,
          "%s: %zu x %zu, want %zu x %zu", file, sae_acts_rows(acts), sae_acts_dim(acts),
          n_win * n_pos, w);
    sae_lm_ws *ws = sae_lm_ws_new(lm, CTX);
    float *want = malloc(CTX * w * sizeof *want), *got = malloc(n_pos * w * sizeof *got);
    double worst = 0;
    for (size_t k = 0; k < n_win && sae_acts_rows(acts) == n_win * n_pos; k++) {
        sae_lm_batch b = {.ids = win + k * CTX, .n_seq = 1, .seq_len = CTX};
        if (sae_lm_forward(lm, ws, &b, h, 1, &want, NULL, &err) ||
            sae_acts_read(acts, k * n_pos, n_pos, got, &err)) {
            CHECK(0, "%s", err.msg);
            break;
        }
        for (size_t i = 0; i < n_pos; i++)
            for (size_t j = 0; j < w; j++) {
                double a = got[i * w + j], e = want[pos[i] * w + j];
                double d = fabs(a - e) / (1 + fabs(e));
                worst = d > worst ? d : worst;
            }
    }
    /* The same code in another batch shape: only BLAS's summation order differs. */
    CHECK(worst < 1e-5, "%s: rows differ from the forward pass by %g", file, worst);
    free(want);
    free(got);
    sae_lm_ws_free(ws);
    sae_acts_free(acts);
}

/* Sets cfg.json's metadata keys of the SAE folder at path. */
static void set_cfg(const char *sae, const char *hook, int context, json_t *slice)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/cfg.json", dir, sae);
    json_t *cfg = json_load_file(path, 0, NULL), *meta = json_object_get(cfg, "metadata");
    json_object_set_new(meta, "hook_name", json_string(hook));
    json_object_set_new(meta, "context_size", json_integer(context));
    if (slice)
        json_object_set_new(meta, "seqpos_slice", slice);
    json_dump_file(cfg, path, JSON_INDENT(2));
    json_decref(cfg);
}

/* Whether two files hold the same bytes. */
static bool same_file(const char *a, const char *b)
{
    char pa[4096], pb[4096];
    size_t la, lb;
    char *x = sae_fixture_read_file(at(a, pa, sizeof pa), &la);
    char *y = sae_fixture_read_file(at(b, pb, sizeof pb), &lb);
    bool same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

int main(void)
{
    sae_bin = getenv("SAE_BIN");
    if (!sae_bin || !(dir = sae_fixture_tmpdir("harvest")))
        return fprintf(stderr, "SAE_BIN is not set\n"), 1;
    write_texts();
    sae_lm *lm;
    sae_bpe *bpe;
    sae_error err;
    if (sae_lm_load(LM_DIR, &lm, &err) || sae_bpe_load(&bpe, LM_DIR, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    int32_t bos = sae_bpe_bos(bpe);

    /* Three hooks, batches of 3 windows, and what SAELens would cut. */
    CHECK(run("'%s' harvest --lm '%s' --hook blocks.0.hook_resid_pre,blocks.1.hook_resid_post,"
              "blocks.1.attn.hook_z --text a.jsonl b.txt --out h --context-size %d --batch 3 "
              "--quiet",
              sae_bin, LM_DIR, CTX) == 0,
          "sae harvest failed");
    static uint32_t want[1 << 16], got[1 << 16];
    size_t n_win = saelens_windows(bpe, bos, want, sizeof want / sizeof want[0]), lines;
    char path[4096];
    size_t n_ids = read_ids(at("h/tokens.jsonl", path, sizeof path), got, 1 << 16, &lines);
    CHECK(n_win > 20 && lines == n_win && n_ids == n_win * CTX, "%zu windows, %zu lines, %zu ids",
          n_win, lines, n_ids);
    for (size_t i = 0; i < n_ids && i < n_win * CTX; i++)
        if (got[i] != want[i]) {
            CHECK(0, "window %zu position %zu: id %u, SAELens' %u", i / CTX, i % CTX, got[i],
                  want[i]);
            break;
        }
    sae_tokens *tok;
    if (sae_tokens_open(path, &tok, &err))
        CHECK(0, "%s", err.msg);
    else {
        CHECK(tok->n_docs == n_win && tok->n_tokens == n_win * CTX, "tokens reader: %zu docs",
              tok->n_docs);
        sae_tokens_free(tok);
    }
    size_t all[CTX];
    for (size_t i = 0; i < CTX; i++)
        all[i] = i;
    static const char *hooks[] = {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_post",
                                  "blocks.1.attn.hook_z"};
    for (size_t k = 0; k < 3; k++) {
        sae_lm_hook h;
        char file[512];
        sae_lm_hook_parse(hooks[k], &h, &err);
        snprintf(file, sizeof file, "%s/h/%s.npy", dir, hooks[k]);
        check_rows(lm, file, &h, got, n_win, all, CTX);
    }

    /* sae train and sae index read it; index --lm gives the same index. */
    CHECK(run("'%s' train --activations h/blocks.1.hook_resid_post.npy --out s --d-sae 64 "
              "--steps 40 --quiet",
              sae_bin) == 0,
          "sae train on the harvest failed");
    set_cfg("s", "blocks.1.hook_resid_post", CTX, NULL);
    CHECK(run("'%s' index --model s --activations h/blocks.1.hook_resid_post.npy --tokens "
              "h/tokens.jsonl --out a.db --quiet",
              sae_bin) == 0,
          "sae index on the harvest failed");
    CHECK(run("'%s' index --model s --lm '%s' --text a.jsonl b.txt --out b.db --quiet", sae_bin,
              LM_DIR) == 0,
          "sae index --lm failed");
    CHECK(same_file("a.db", "b.db"), "index --lm differs from harvest-then-index");
    CHECK(same_file("h/tokens.jsonl", "b.db.tokens.jsonl"), "index --lm's tokens differ");
    CHECK(run("'%s' index --model s --activations h/blocks.1.hook_resid_post.npy --tokens "
              "h/tokens.jsonl --out a1.db --shard 1/3 --quiet && '%s' index --model s --lm '%s' "
              "--text a.jsonl b.txt --out b1.db --shard 1/3 --quiet",
              sae_bin, sae_bin, LM_DIR) == 0,
          "shards failed");
    CHECK(same_file("a1.db", "b1.db"), "index --lm --shard 1/3 differs");
    /* The text streams through the model once: what reads the corpus again
     * is refused up front, naming itself, rather than failing mid-build. */
    CHECK(run("'%s' index --model s --lm '%s' --text a.jsonl b.txt --out c.db --quiet "
              "--max-state-bytes 1000 2>err.txt",
              sae_bin, LM_DIR) == 1 &&
              file_has("err.txt", "more than one pass (--max-state-bytes)"),
          "index --lm with several passes: not refused as it should be");
    CHECK(run("'%s' index --model s --lm '%s' --text a.jsonl b.txt --out c.db --quiet "
              "--neuronpedia-hist 2>err.txt",
              sae_bin, LM_DIR) == 1 &&
              file_has("err.txt", "--neuronpedia-hist needs the corpus again"),
          "index --lm --neuronpedia-hist: not refused as it should be");

    /* --sae: the hook, the context and seqpos_slice from cfg.json. */
    set_cfg("s", "blocks.1.hook_resid_post", CTX, json_pack("[i, n]", 1));
    CHECK(run("'%s' harvest --lm '%s' --sae s --text a.jsonl b.txt --out h2 --quiet", sae_bin,
              LM_DIR) == 0,
          "sae harvest --sae failed");
    static uint32_t got2[1 << 16];
    size_t n2 = read_ids(at("h2/tokens.jsonl", path, sizeof path), got2, 1 << 16, &lines);
    CHECK(lines == n_win && n2 == n_win * (CTX - 1), "seqpos_slice [1, None]: %zu ids", n2);
    for (size_t k = 0; k < n_win && n2 == n_win * (CTX - 1); k++)
        CHECK(!memcmp(got2 + k * (CTX - 1), got + k * CTX + 1, (CTX - 1) * sizeof *got),
              "window %zu: positions 1.. differ", k);
    sae_lm_hook h;
    sae_lm_hook_parse("blocks.1.hook_resid_post", &h, &err);
    snprintf(path, sizeof path, "%s/h2/blocks.1.hook_resid_post.npy", dir);
    check_rows(lm, path, &h, got, n_win, all + 1, CTX - 1);

    /* Too little text for a window: an error that says so. */
    FILE *f = fopen(at("short.txt", path, sizeof path), "w");
    fputs("Too short.\n", f);
    fclose(f);
    CHECK(run("'%s' harvest --lm '%s' --hook hook_embed --text short.txt --out h3 --context-size 16 --quiet "
              "2>err.txt",
              sae_bin, LM_DIR) == 1,
          "a text shorter than a window must fail");
    char *msg = sae_fixture_read_file(at("err.txt", path, sizeof path), NULL);
    CHECK(msg && strstr(msg, "no whole window"), "message: %s", msg ? msg : "(none)");
    free(msg);
    CHECK(run("'%s' harvest --lm '%s' --text short.txt --out h3 2>/dev/null", sae_bin, LM_DIR) ==
              2,
          "no --hook and no --sae is a usage error");

    for (size_t i = 0; i < n_docs; i++)
        free(docs[i]);
    sae_bpe_free(bpe);
    sae_lm_free(lm);
    if (!failures)
        sae_fixture_rmtree(dir);
    free(dir);
    fprintf(stderr, "harvest: %d failures\n", failures);
    return failures ? 1 : 0;
}
