/* compare.c: core/lm/bpe against the reference ids reference.mjs wrote.
 *
 *   bpe_compare DIR
 *
 * Loads DIR/tokenizer.json, and DIR/vocab.json + DIR/merges.txt, encodes every
 * document of DIR/manifest.tsv with both (SAE_BPE_SPECIAL for mode "special")
 * and compares the ids with DIR/docs/NNNN.ids id for id, then decodes them and
 * compares the bytes with the document. Prints the corpus size, the match rate
 * and encode's speed; exits 1 on any difference, naming the first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/clock.h"
#include "lm/bpe.h"

/* Reads a whole file into a new buffer; exits on failure (a test program). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "compare: %s: cannot read\n", path);
        exit(1);
    }
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "compare: %s: cannot read\n", path);
        exit(1);
    }
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* Prints the first difference between got and want, with the ids around it. */
static void show_difference(const char *what, const int32_t *got, size_t n_got,
                            const int32_t *want, size_t n_want)
{
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i])
        i++;
    fprintf(stderr, "compare: %s: first difference at id %zu (got %zu ids, want %zu)\n  got: ",
            what, i, n_got, n_want);
    for (size_t k = i > 3 ? i - 3 : 0; k < i + 6 && k < n_got; k++)
        fprintf(stderr, "%ld ", (long)got[k]);
    fprintf(stderr, "\n  want:");
    for (size_t k = i > 3 ? i - 3 : 0; k < i + 6 && k < n_want; k++)
        fprintf(stderr, " %ld", (long)want[k]);
    fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bpe_compare DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[4096], path2[4096];
    sae_error err;
    sae_bpe *tj = NULL, *vm = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (sae_bpe_load(&tj, path, &err) != 0) {
        fprintf(stderr, "compare: %s\n", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    snprintf(path2, sizeof path2, "%s/merges.txt", dir);
    if (sae_bpe_load_files(&vm, path, path2, &err) != 0) {
        fprintf(stderr, "compare: %s\n", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/manifest.tsv", dir);
    size_t mlen;
    char *manifest = slurp(path, &mlen);
    size_t docs = 0, bad_docs = 0, bytes = 0, ids = 0, same = 0;
    double secs = 0, cpu = 0; /* encode's wall and CPU seconds */
    for (char *line = strtok(manifest, "\n"); line; line = strtok(NULL, "\n")) {
        char name[16], mode[16];
        if (sscanf(line, "%15[^\t]\t%15[^\t]", name, mode) != 2) {
            fprintf(stderr, "compare: manifest.tsv: bad line %s\n", line);
            return 1;
        }
        const char *what = strchr(strchr(line, '\t') + 1, '\t') + 1;
        size_t tlen, ilen;
        snprintf(path, sizeof path, "%s/docs/%s.txt", dir, name);
        char *text = slurp(path, &tlen);
        snprintf(path, sizeof path, "%s/docs/%s.ids", dir, name);
        int32_t *want = (int32_t *)slurp(path, &ilen);
        size_t n_want = ilen / sizeof(int32_t);
        unsigned flags = strcmp(mode, "special") == 0 ? SAE_BPE_SPECIAL : 0;
        int32_t *got, *got2;
        size_t n_got, n_got2;
        double t0 = sae_clock_s();
        clock_t c0 = clock();
        if (sae_bpe_encode(tj, text, tlen, flags, &got, &n_got, &err) != 0) {
            fprintf(stderr, "compare: %s: %s\n", what, err.msg);
            return 1;
        }
        secs += sae_clock_s() - t0;
        cpu += (double)(clock() - c0) / CLOCKS_PER_SEC;
        if (sae_bpe_encode(vm, text, tlen, flags, &got2, &n_got2, &err) != 0) {
            fprintf(stderr, "compare: %s: %s\n", what, err.msg);
            return 1;
        }
        size_t match = 0;
        for (size_t i = 0; i < n_got && i < n_want && got[i] == want[i]; i++)
            match++;
        int ok = match == n_want && n_got == n_want;
        if (!ok)
            show_difference(what, got, n_got, want, n_want);
        if (n_got2 != n_got || memcmp(got2, got, n_got * sizeof *got) != 0) {
            show_difference("vocab.json + merges.txt against tokenizer.json", got2, n_got2, got,
                            n_got);
            ok = 0;
        }
        char *back = NULL;
        size_t blen = 0;
        if (sae_bpe_decode(tj, got, n_got, &back, &blen, &err) != 0 || blen != tlen ||
            memcmp(back, text, tlen) != 0) {
            fprintf(stderr, "compare: %s: decode(encode(text)) is not the text\n", what);
            ok = 0;
        }
        free(back);
        docs++;
        bad_docs += !ok;
        bytes += tlen;
        ids += n_want;
        same += ok ? n_want : match;
        free(text);
        free(want);
        free(got);
        free(got2);
    }
    printf("compare: %zu documents, %zu bytes, %zu reference ids; %zu ids match (%.4f %%), "
           "%zu documents differ; encode %.2f M tokens/s (%.1f MB/s), %.2f M per CPU second\n",
           docs, bytes, ids, same, ids ? 100.0 * (double)same / (double)ids : 0.0, bad_docs,
           (double)ids / secs / 1e6, (double)bytes / secs / 1e6, (double)ids / cpu / 1e6);
    free(manifest);
    sae_bpe_free(tj);
    sae_bpe_free(vm);
    return bad_docs == 0 && docs > 0 ? 0 : 1;
}
