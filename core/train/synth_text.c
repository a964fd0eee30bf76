/* synth_text.c: the text `sae synth` reads (the default corpus or the files
 * given) and its tokenizer; the rules are documented in synth.h. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/synth_int.h"

/* ---- tokenizer ---- */

/* Decodes one UTF-8 character at s[0..n) into *cp; returns its length (1 and
 * U+FFFD for an invalid or truncated sequence, an overlong form or a
 * surrogate). */
size_t synth_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (n < len) {
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = v;
    return len;
}

/* Appends cp as UTF-8 to buf (which has room for 4 more bytes); returns the
 * bytes written. */
static size_t utf8_encode(uint32_t cp, char *buf)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xc0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xe0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        buf[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    buf[0] = (char)(0xf0 | (cp >> 18));
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    buf[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The tokenizer's whitespace. */
static bool is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' || c == '\n';
}

/* Letters: ASCII letters and every non-ASCII character but U+FFFD and the
 * punctuation and symbol blocks U+2000..U+2BFF (dashes, curly quotes...). */
bool synth_is_letter(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= 0x80 && !(c >= 0x2000 && c <= 0x2bff) && c != 0xfffd);
}

/* ASCII digits: what numbers are made of. */
bool synth_is_digit(uint32_t c)
{
    return c >= '0' && c <= '9';
}

/* A growing document being built by the tokenizer. */
typedef struct doc_builder {
    sae_synth_doc doc;
    size_t cap;
} doc_builder;

/* Appends one token (text copied, len bytes) to b. */
static int builder_push(doc_builder *b, const char *text, size_t len, bool line_start)
{
    if (b->doc.n_tokens == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        char **t = realloc(b->doc.tokens, cap * sizeof *t);
        if (!t)
            return -1;
        b->doc.tokens = t;
        uint8_t *ls = realloc(b->doc.line_start, cap);
        if (!ls)
            return -1;
        b->doc.line_start = ls;
        uint8_t *le = realloc(b->doc.line_end, cap);
        if (!le)
            return -1;
        b->doc.line_end = le;
        b->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s)
        return -1;
    memcpy(s, text, len);
    s[len] = '\0';
    size_t i = b->doc.n_tokens++;
    b->doc.tokens[i] = s;
    b->doc.line_start[i] = line_start;
    b->doc.line_end[i] = 0;
    return 0;
}

/* Frees a document's tokens, marks and id (not d itself). */
static void doc_free(sae_synth_doc *d)
{
    for (size_t i = 0; i < d->n_tokens; i++)
        free(d->tokens[i]);
    free(d->tokens);
    free(d->line_start);
    free(d->line_end);
    free(d->id);
}

void sae_synth_corpus_free(sae_synth_corpus *c)
{
    for (size_t i = 0; i < c->n_docs; i++)
        doc_free(&c->docs[i]);
    free(c->docs);
    memset(c, 0, sizeof *c);
}

/* Moves b's document (if it has tokens) to the corpus, naming it. */
static int corpus_take(sae_synth_corpus *c, doc_builder *b, const char *name, size_t para)
{
    if (!b->doc.n_tokens) {
        doc_free(&b->doc);
        memset(b, 0, sizeof *b);
        return 0;
    }
    sae_synth_doc *docs = realloc(c->docs, (c->n_docs + 1) * sizeof *docs);
    if (!docs)
        return -1;
    c->docs = docs;
    size_t n = strlen(name) + 24;
    if (!(b->doc.id = malloc(n)))
        return -1;
    snprintf(b->doc.id, n, "%s/%zu", name, para);
    c->docs[c->n_docs++] = b->doc;
    c->n_tokens += b->doc.n_tokens;
    memset(b, 0, sizeof *b);
    return 0;
}

int sae_synth_tokenize(const char *name, const char *text, size_t len, size_t max_tokens,
                       sae_synth_corpus *c, sae_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    doc_builder b = {0};
    size_t longest = 0, para = 0, pos = 0;
    for (size_t i = 0, start = 0; i <= len; i++)
        if (i == len || s[i] == '\n') {
            longest = i - start > longest ? i - start : longest;
            start = i + 1;
        }
    /* a token lies within a line; each byte of it takes at most 3 bytes
     * (U+FFFD), plus the leading space */
    char *tok = malloc(3 * longest + 8);
    int rc = 0;
    if (!tok)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory tokenizing", name);
    while (pos < len && !(max_tokens && c->n_tokens + b.doc.n_tokens >= max_tokens)) {
        /* one line: [pos, eol) */
        size_t eol = pos;
        while (eol < len && s[eol] != '\n')
            eol++;
        bool blank = true;
        for (size_t i = pos; i < eol; i++)
            blank = blank && is_space(s[i]);
        if (blank) {
            if (b.doc.n_tokens) {
                if (corpus_take(c, &b, name, para++))
                    goto oom;
            }
            pos = eol + 1;
            continue;
        }
        bool space_before = b.doc.n_tokens > 0, line_start = true, after_word = false;
        size_t i = pos;
        while (i < eol && !(max_tokens && c->n_tokens + b.doc.n_tokens >= max_tokens)) {
            uint32_t cp;
            size_t n = synth_utf8_decode(s + i, eol - i, &cp);
            if (is_space(cp)) {
                space_before = b.doc.n_tokens > 0;
                after_word = false;
                i += n;
                continue;
            }
            size_t tl = 0;
            if (space_before)
                tok[tl++] = ' ';
            bool word = false;
            uint32_t next = 0;
            if (i + n < eol)
                synth_utf8_decode(s + i + n, eol - i - n, &next);
            if (synth_is_letter(cp) || synth_is_digit(cp) ||
                ((cp == '\'' || cp == 0x2019) && after_word && !space_before &&
                 synth_is_letter(next))) {
                bool digits = synth_is_digit(cp);
                tl += utf8_encode(cp, tok + tl);
                i += n;
                while (i < eol) {
                    size_t m = synth_utf8_decode(s + i, eol - i, &cp);
                    if (digits ? !synth_is_digit(cp) : !synth_is_letter(cp))
                        break;
                    tl += utf8_encode(cp, tok + tl);
                    i += m;
                }
                word = !digits;
            } else {
                tl += utf8_encode(cp, tok + tl);
                i += n;
            }
            if (builder_push(&b, tok, tl, line_start))
                goto oom;
            line_start = false;
            space_before = false;
            after_word = word;
        }
        if (b.doc.n_tokens && !line_start)
            b.doc.line_end[b.doc.n_tokens - 1] = 1;
        pos = eol + 1;
    }
    if (corpus_take(c, &b, name, para))
        goto oom;
    goto out;
oom:
    rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory tokenizing", name);
    doc_free(&b.doc);
out:
    free(tok);
    return rc;
}

/* ---- reading the text ---- */

/* Reads the whole file at path into *buf (NUL-terminated), *len bytes. */
static int read_file(const char *path, char **buf, size_t *len, sae_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sae_error_set(err, SAE_EIO, "%s: %s", path, strerror(errno));
    char *b = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (cap - n < 65536) {
            if (cap > ((size_t)1 << 30)) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: larger than 1 GiB", path);
                goto out;
            }
            cap = cap ? 2 * cap : 65536;
            char *g = realloc(b, cap + 1);
            if (!g) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            b = g;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = sae_error_set(err, SAE_EIO, "%s: read failed", path);
            break;
        }
    }
out:
    fclose(f);
    if (rc) {
        free(b);
        return rc;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

/* qsort comparison of two C strings. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The default corpus: regular files (not symbolic links) in dir, sorted by
 * name, as full paths in *out (caller frees each and the array). */
static int default_texts(const char *dir, char ***out, size_t *n_out, sae_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sae_error_set(err, SAE_EIO, "%s: %s (give a text with --text FILE)", dir,
                             strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t plen = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(plen);
        char **g = realloc(names, (n + 1) * sizeof *names);
        if (!p || !g) {
            free(p);
            if (g)
                names = g;
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        names = g;
        snprintf(p, plen, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        names[n++] = p;
    }
    if (!n) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: no text files (give one with --text FILE)",
                           dir);
        goto out;
    }
    qsort(names, n, sizeof *names, cmp_str);
out:
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return rc;
    }
    *out = names;
    *n_out = n;
    return 0;
}

int synth_read_corpus(const char *const *texts, size_t n_texts, size_t max_tokens,
                      sae_synth_corpus *c, size_t *n_files, sae_error *err)
{
    char **found = NULL, *text = NULL;
    size_t n_found = 0;
    int rc = 0;
    if (!n_texts) {
        if ((rc = default_texts(SAE_SYNTH_DEFAULT_DIR, &found, &n_found, err)))
            return rc;
        texts = (const char *const *)found;
        n_texts = n_found;
    }
    for (size_t i = 0; i < n_texts && c->n_tokens < max_tokens; i++) {
        size_t len = 0;
        if ((rc = read_file(texts[i], &text, &len, err)))
            goto out;
        const char *base = strrchr(texts[i], '/');
        base = base ? base + 1 : texts[i];
        if ((rc = sae_synth_tokenize(base, text, len, max_tokens, c, err)))
            goto out;
        free(text);
        text = NULL;
    }
    if (!c->n_tokens) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: no tokens in the text", texts[0]);
        goto out;
    }
    *n_files = n_texts;
out:
    free(text);
    for (size_t i = 0; i < n_found; i++)
        free(found[i]);
    free(found);
    return rc;
}
