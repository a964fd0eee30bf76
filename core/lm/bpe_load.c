/* bpe_load.c: reading a tokenizer's files into the tables of bpe_internal.h.
 *
 * Every file is hostile: sizes and counts are capped (bpe.h), ids checked,
 * duplicate ids and tokens refused, and every merge must name two tokens of
 * the vocabulary whose concatenation is one too. Each message names the file. */
#include "lm/bpe.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "io/rng.h"
#include "lm/bpe_internal.h"

/* What one load call works with: the tokenizer being filled, the name of the
 * file being read, the inverse of the byte-to-unicode map. */
struct loader {
    sae_bpe *t;
    const char *name;
    int16_t u2b[0x144]; /* code point -> byte, -1 for none (the map ends at U+0143) */
    uint8_t tmp[2 * SAE_BPE_MAX_TOKEN];
};

/* Reads the whole file at path into a new malloc'd, NUL-terminated buffer,
 * refusing one larger than SAE_BPE_MAX_FILE. */
static int read_capped(const char *path, char **buf, size_t *len, sae_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sae_error_set(err, SAE_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > SAE_BPE_MAX_FILE) {
        fclose(f);
        return sae_error_set(err, SAE_ENOMEM, "%s: %lld bytes, more than the %zu a tokenizer "
                             "file may have", path, (long long)st.st_size, SAE_BPE_MAX_FILE);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    fclose(f);
    if (got != n) {
        free(b);
        return sae_error_set(err, SAE_EIO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

/* Writes a printable, quoted rendering of s[0 .. n) (at most ~40 bytes of it)
 * into out, for messages. */
static const char *quoted(const char *s, size_t n, char out[200])
{
    size_t at = 0;
    out[at++] = '\'';
    for (size_t i = 0; i < n && at < 180; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 40) {
            at += (size_t)snprintf(out + at, 200 - at, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '\'')
            out[at++] = (char)c;
        else
            at += (size_t)snprintf(out + at, 200 - at, "\\x%02x", c);
    }
    out[at++] = '\'';
    out[at] = '\0';
    return out;
}

static sae_bpe *bpe_new(void)
{
    sae_bpe *t = calloc(1, sizeof *t);
    if (t)
        t->bos = -1;
    return t;
}

void sae_bpe_free(sae_bpe *t)
{
    if (!t)
        return;
    free(t->tok_off);
    free(t->tok_len);
    free(t->bytes);
    free(t->by_bytes);
    free(t->merges);
    free(t->added);
    free(t);
}

static void loader_init(struct loader *L, sae_bpe *t, const char *name)
{
    uint16_t b2u[256];
    sae_bpe_byte_map(b2u);
    L->t = t;
    L->name = name;
    memset(L->u2b, 0xFF, sizeof L->u2b);
    for (int b = 0; b < 256; b++)
        L->u2b[b2u[b]] = (int16_t)b;
}

/* Converts a vocabulary string s[0 .. n) to the bytes it stands for, in
 * L->tmp: each character through the byte-to-unicode map, or, when some
 * character is not in the map (an added token such as "<|im_start|>" written
 * as itself), the string's own bytes, as HF's ByteLevel decoder does. Returns
 * the length, or -1 for an empty or too long token. */
static long token_bytes(struct loader *L, const char *s, size_t n)
{
    if (n == 0 || n > sizeof L->tmp)
        return -1;
    size_t out = 0;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k;
        if (u[i] < 0x80)
            cp = u[i], k = 1;
        else if (u[i] >= 0xC2 && u[i] <= 0xDF && i + 1 < n && (u[i + 1] & 0xC0) == 0x80)
            cp = (uint32_t)(u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F), k = 2;
        else
            goto raw;
        if (cp >= 0x144 || L->u2b[cp] < 0)
            goto raw;
        L->tmp[out++] = (uint8_t)L->u2b[cp];
        i += k;
    }
    return out <= SAE_BPE_MAX_TOKEN ? (long)out : -1;
raw:
    if (n > SAE_BPE_MAX_TOKEN)
        return -1;
    memcpy(L->tmp, s, n);
    return (long)n;
}

/* Gives id the token bytes[0 .. n), growing the tables as needed. An id given
 * twice must be given the same bytes (an added token that is also in the
 * vocabulary). what names the entry in messages. */
static int add_token(struct loader *L, long long id, const uint8_t *bytes, size_t n,
                     const char *what, sae_error *err)
{
    sae_bpe *t = L->t;
    char q[200];
    if (id < 0 || id >= SAE_BPE_MAX_IDS)
        return sae_error_set(err, SAE_ERANGE, "%s: %s: id %lld is not in [0, %d)", L->name, what,
                             id, SAE_BPE_MAX_IDS);
    if ((size_t)id >= t->ids_cap) {
        size_t cap = t->ids_cap ? t->ids_cap : 256;
        while (cap <= (size_t)id)
            cap *= 2;
        uint32_t *off = realloc(t->tok_off, cap * sizeof *off);
        if (!off)
            goto oom;
        t->tok_off = off;
        uint32_t *len = realloc(t->tok_len, cap * sizeof *len);
        if (!len)
            goto oom;
        t->tok_len = len;
        for (size_t i = t->ids_cap; i < cap; i++)
            t->tok_len[i] = BPE_NO_TOKEN;
        t->ids_cap = cap;
    }
    if ((size_t)id >= t->n_ids)
        t->n_ids = (size_t)id + 1;
    if (t->tok_len[id] != BPE_NO_TOKEN) {
        if (t->tok_len[id] == n && memcmp(t->bytes + t->tok_off[id], bytes, n) == 0)
            return 0;
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: id %lld is already token %s", L->name,
                             what, id, quoted(t->bytes + t->tok_off[id], t->tok_len[id], q));
    }
    if (t->bytes_len + n > t->bytes_cap) {
        size_t cap = t->bytes_cap ? t->bytes_cap : 4096;
        while (cap < t->bytes_len + n)
            cap *= 2;
        if (cap > UINT32_MAX)
            return sae_error_set(err, SAE_ENOMEM, "%s: the tokens' bytes pass 4 GB", L->name);
        char *b = realloc(t->bytes, cap);
        if (!b)
            goto oom;
        t->bytes = b;
        t->bytes_cap = cap;
    }
    memcpy(t->bytes + t->bytes_len, bytes, n);
    t->tok_off[id] = (uint32_t)t->bytes_len;
    t->tok_len[id] = (uint32_t)n;
    t->bytes_len += n;
    return 0;
oom:
    return sae_error_set(err, SAE_ENOMEM, "%s: out of memory at id %lld", L->name, id);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

int32_t sae_bpe_find(const sae_bpe *t, const char *bytes, size_t len)
{
    if (!t->by_bytes)
        return -1;
    size_t mask = t->by_bytes_cap - 1;
    for (size_t i = XXH3_64bits(bytes, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->by_bytes[i];
        if (id < 0)
            return -1;
        if (t->tok_len[id] == len && memcmp(t->bytes + t->tok_off[id], bytes, len) == 0)
            return id;
    }
}

/* Builds the bytes -> id table once every token is in, refusing two ids of
 * the same bytes, then the single-byte ids (all 256 must be tokens). */
static int index_tokens(struct loader *L, sae_error *err)
{
    sae_bpe *t = L->t;
    size_t count = 0;
    for (size_t id = 0; id < t->n_ids; id++)
        count += t->tok_len[id] != BPE_NO_TOKEN;
    if (count == 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: the vocabulary is empty", L->name);
    t->by_bytes_cap = pow2_at_least(2 * count);
    t->by_bytes = malloc(t->by_bytes_cap * sizeof *t->by_bytes);
    if (!t->by_bytes)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for %zu tokens", L->name, count);
    memset(t->by_bytes, 0xFF, t->by_bytes_cap * sizeof *t->by_bytes);
    size_t mask = t->by_bytes_cap - 1;
    for (size_t id = 0; id < t->n_ids; id++) {
        if (t->tok_len[id] == BPE_NO_TOKEN)
            continue;
        const char *b = t->bytes + t->tok_off[id];
        size_t n = t->tok_len[id];
        size_t i = XXH3_64bits(b, n) & mask;
        for (; t->by_bytes[i] >= 0; i = (i + 1) & mask) {
            int32_t other = t->by_bytes[i];
            if (t->tok_len[other] == n && memcmp(t->bytes + t->tok_off[other], b, n) == 0) {
                char q[200];
                return sae_error_set(err, SAE_EFORMAT, "%s: token %s has two ids, %ld and %zu",
                                     L->name, quoted(b, n, q), (long)other, id);
            }
        }
        t->by_bytes[i] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = sae_bpe_find(t, &c, 1);
        if (t->byte_id[b] < 0)
            return sae_error_set(err, SAE_EFORMAT, "%s: no token stands for the byte 0x%02x; a "
                                 "byte-level BPE vocabulary has all 256", L->name, b);
    }
    return 0;
}

static int merges_alloc(struct loader *L, size_t n, sae_error *err)
{
    if (n > SAE_BPE_MAX_IDS)
        return sae_error_set(err, SAE_ENOMEM, "%s: %zu merges, more than the %d allowed", L->name,
                             n, SAE_BPE_MAX_IDS);
    L->t->merges_cap = pow2_at_least(2 * n);
    L->t->merges = malloc(L->t->merges_cap * sizeof *L->t->merges);
    if (!L->t->merges)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for %zu merges", L->name, n);
    for (size_t i = 0; i < L->t->merges_cap; i++)
        L->t->merges[i].id = -1;
    return 0;
}

/* Adds the merge of rank `rank` of the vocabulary strings a[0 .. na) and
 * b[0 .. nb). A pair given twice keeps its later rank, as encoder.py's dict
 * and HF's map do. where names the line or entry. */
static int add_merge(struct loader *L, uint32_t rank, const char *a, size_t na, const char *b,
                     size_t nb, const char *where, sae_error *err)
{
    sae_bpe *t = L->t;
    char q[200];
    int32_t ids[2];
    const char *part[2] = {a, b};
    size_t plen[2] = {na, nb};
    for (int k = 0; k < 2; k++) {
        long n = token_bytes(L, part[k], plen[k]);
        ids[k] = n < 0 ? -1 : sae_bpe_find(t, (const char *)L->tmp, (size_t)n);
        if (ids[k] < 0)
            return sae_error_set(err, SAE_EFORMAT, "%s: %s: %s is not in the vocabulary",
                                 L->name, where, quoted(part[k], plen[k], q));
    }
    size_t la = t->tok_len[ids[0]], lb = t->tok_len[ids[1]];
    memcpy(L->tmp, t->bytes + t->tok_off[ids[0]], la);
    memcpy(L->tmp + la, t->bytes + t->tok_off[ids[1]], lb);
    int32_t merged = sae_bpe_find(t, (const char *)L->tmp, la + lb);
    if (merged < 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: the merge %s is not in the vocabulary",
                             L->name, where, quoted((const char *)L->tmp, la + lb, q));
    uint64_t pair = (uint64_t)(uint32_t)ids[0] << 32 | (uint32_t)ids[1];
    size_t mask = t->merges_cap - 1;
    size_t i = sae_hash64(pair) & mask;
    while (t->merges[i].id >= 0 && t->merges[i].pair != pair)
        i = (i + 1) & mask;
    t->merges[i] = (struct bpe_merge){pair, rank, merged};
    return 0;
}

/* An added token's sort key: longest content first, then by id. */
struct added_key {
    uint32_t len;
    int32_t id;
};

static int added_cmp(const void *x, const void *y)
{
    const struct added_key *a = x, *b = y;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Reads added_tokens (an array of {"id", "content"}): each content is matched
 * as its own bytes and must be a new token or its own id's. */
static int load_added(struct loader *L, json_t *arr, sae_error *err)
{
    sae_bpe *t = L->t;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return sae_error_set(err, SAE_EFORMAT, "%s: added_tokens is not an array", L->name);
    size_t n = json_array_size(arr);
    if (n > SAE_BPE_MAX_IDS)
        return sae_error_set(err, SAE_ENOMEM, "%s: %zu added tokens, more than %d", L->name, n,
                             SAE_BPE_MAX_IDS);
    t->added = malloc((n ? n : 1) * sizeof *t->added);
    if (!t->added)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", L->name);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *id = json_object_get(o, "id"), *content = json_object_get(o, "content");
        char what[64];
        snprintf(what, sizeof what, "added_tokens[%zu]", i);
        if (!json_is_integer(id) || !json_is_string(content) || json_string_length(content) == 0 ||
            json_string_length(content) > SAE_BPE_MAX_TOKEN)
            return sae_error_set(err, SAE_EFORMAT, "%s: %s: not {\"id\": integer, \"content\": "
                                 "non-empty string of at most %d bytes}", L->name, what,
                                 SAE_BPE_MAX_TOKEN);
        int rc = add_token(L, json_integer_value(id), (const uint8_t *)json_string_value(content),
                           json_string_length(content), what, err);
        if (rc)
            return rc;
        t->added[t->n_added++] = (int32_t)json_integer_value(id);
    }
    return 0;
}

/* Sorts the added tokens for matching (an id listed twice counts once) and
 * marks their first bytes. */
static int index_added(sae_bpe *t, sae_error *err)
{
    if (t->n_added == 0)
        return 0;
    struct added_key *keys = malloc(t->n_added * sizeof *keys);
    if (!keys)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu added tokens", t->n_added);
    for (size_t i = 0; i < t->n_added; i++)
        keys[i] = (struct added_key){t->tok_len[t->added[i]], t->added[i]};
    qsort(keys, t->n_added, sizeof *keys, added_cmp);
    size_t n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (n == 0 || keys[i].id != t->added[n - 1])
            t->added[n++] = keys[i].id;
    t->n_added = n;
    free(keys);
    for (size_t i = 0; i < n; i++)
        t->added_first[(uint8_t)t->bytes[t->tok_off[t->added[i]]]] = 1;
    return 0;
}

/* Reads a vocabulary object {"string": id, ...}. */
static int load_vocab(struct loader *L, json_t *vocab, sae_error *err)
{
    if (!json_is_object(vocab))
        return sae_error_set(err, SAE_EFORMAT, "%s: the vocabulary is not an object of "
                             "token -> id", L->name);
    if (json_object_size(vocab) > SAE_BPE_MAX_IDS)
        return sae_error_set(err, SAE_ENOMEM, "%s: %zu tokens, more than the %d allowed", L->name,
                             json_object_size(vocab), SAE_BPE_MAX_IDS);
    const char *key;
    size_t klen;
    json_t *v;
    char q[200];
    json_object_keylen_foreach(vocab, key, klen, v)
    {
        long n = token_bytes(L, key, klen);
        if (n < 0)
            return sae_error_set(err, SAE_EFORMAT, "%s: token %s is empty or longer than %d "
                                 "bytes", L->name, quoted(key, klen, q), SAE_BPE_MAX_TOKEN);
        if (!json_is_integer(v))
            return sae_error_set(err, SAE_EFORMAT, "%s: token %s: the id is not an integer",
                                 L->name, quoted(key, klen, q));
        char what[220];
        snprintf(what, sizeof what, "token %s", quoted(key, klen, q));
        int rc = add_token(L, json_integer_value(v), L->tmp, (size_t)n, what, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Refuses a tokenizer.json whose pipeline is not GPT-2's: a normalizer, a
 * pre-tokenizer other than ByteLevel without prefix space, a model other than
 * plain BPE. */
static int check_pipeline(struct loader *L, json_t *root, json_t *model, sae_error *err)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm))
        return sae_error_set(err, SAE_EFORMAT, "%s: has a normalizer; only GPT-2's byte-level "
                             "BPE (no normalizer) is read", L->name);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    const char *type = json_string_value(json_object_get(pre, "type"));
    json_t *prefix = json_object_get(pre, "add_prefix_space");
    json_t *regex = json_object_get(pre, "use_regex");
    if (!type || strcmp(type, "ByteLevel") != 0 || (prefix && !json_is_false(prefix)) ||
        (regex && !json_is_true(regex)))
        return sae_error_set(err, SAE_EFORMAT, "%s: pre_tokenizer is not GPT-2's (ByteLevel, "
                             "add_prefix_space false, use_regex true)", L->name);
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: model.type is %s, not BPE", L->name, mtype);
    static const char *const off[] = {"byte_fallback", "ignore_merges"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
        if (json_is_true(json_object_get(model, off[i])))
            return sae_error_set(err, SAE_EFORMAT, "%s: model.%s is true; GPT-2's BPE has it "
                                 "false", L->name, off[i]);
    static const char *const empty[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++) {
        const char *s = json_string_value(json_object_get(model, empty[i]));
        if (s && *s)
            return sae_error_set(err, SAE_EFORMAT, "%s: model.%s is set; GPT-2's BPE has none",
                                 L->name, empty[i]);
    }
    return 0;
}

/* Reads model.merges: "a b" strings or [a, b] pairs, rank in order. */
static int load_json_merges(struct loader *L, json_t *merges, sae_error *err)
{
    if (!json_is_array(merges))
        return sae_error_set(err, SAE_EFORMAT, "%s: model.merges is not an array", L->name);
    size_t n = json_array_size(merges);
    int rc = merges_alloc(L, n, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        char where[64];
        snprintf(where, sizeof where, "model.merges[%zu]", i);
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = memchr(a, ' ', json_string_length(m));
            if (sp) {
                na = (size_t)(sp - a);
                b = sp + 1;
                nb = json_string_length(m) - na - 1;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            nb = json_string_length(json_array_get(m, 1));
        }
        if (!b || (json_is_string(m) && memchr(b, ' ', nb)))
            return sae_error_set(err, SAE_EFORMAT, "%s: %s: not \"a b\" nor [\"a\", \"b\"]",
                                 L->name, where);
        rc = add_merge(L, (uint32_t)i, a, na, b, nb, where, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Parses text as JSON (duplicate keys refused), naming the file on failure. */
static int parse_json(const char *text, size_t len, const char *name, json_t **out,
                      sae_error *err)
{
    if (len > SAE_BPE_MAX_FILE)
        return sae_error_set(err, SAE_ENOMEM, "%s: %zu bytes, more than the %zu a tokenizer file "
                             "may have", name, len, SAE_BPE_MAX_FILE);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sae_error_set(err, SAE_EFORMAT, "%s: not valid JSON: line %d: %s", name, jerr.line,
                             jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return sae_error_set(err, SAE_EFORMAT, "%s: not a JSON object", name);
    }
    *out = root;
    return 0;
}

/* The last steps of every load: the added tokens' index and the default BOS. */
static int finish(sae_bpe *t, sae_error *err)
{
    t->bos = sae_bpe_find(t, "<|endoftext|>", 13);
    return index_added(t, err);
}

int sae_bpe_load_json(sae_bpe **out, const char *text, size_t len, const char *name,
                      sae_error *err)
{
    json_t *root = NULL;
    int rc = parse_json(text, len, name, &root, err);
    if (rc)
        return rc;
    struct loader *L = malloc(sizeof *L);
    sae_bpe *t = bpe_new();
    if (!L || !t) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    loader_init(L, t, name);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: no \"model\" object", name);
        goto out;
    }
    if ((rc = check_pipeline(L, root, model, err)) ||
        (rc = load_vocab(L, json_object_get(model, "vocab"), err)) ||
        (rc = load_added(L, json_object_get(root, "added_tokens"), err)) ||
        (rc = index_tokens(L, err)) ||
        (rc = load_json_merges(L, json_object_get(model, "merges"), err)) ||
        (rc = finish(t, err)))
        goto out;
    *out = t;
    t = NULL;
out:
    json_decref(root);
    free(L);
    sae_bpe_free(t);
    return rc;
}

/* Reads merges.txt: a first "#version" line is skipped, as are empty lines;
 * every other line is "a b". */
static int load_merges_txt(struct loader *L, const char *text, size_t len, sae_error *err)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    int rc = merges_alloc(L, lines, err);
    if (rc)
        return rc;
    uint32_t rank = 0;
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + 1;
        lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0 || (lineno == 1 && n >= 8 && memcmp(line, "#version", 8) == 0))
            continue;
        char where[32];
        snprintf(where, sizeof where, "line %zu", lineno);
        const char *sp = memchr(line, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - line) - 1))
            return sae_error_set(err, SAE_EFORMAT, "%s: %s: not two tokens and one space",
                                 L->name, where);
        size_t na = (size_t)(sp - line);
        if ((rc = add_merge(L, rank++, line, na, sp + 1, n - na - 1, where, err)))
            return rc;
    }
    return 0;
}

int sae_bpe_load_files(sae_bpe **out, const char *vocab_json, const char *merges_txt,
                       sae_error *err)
{
    char *vtext = NULL, *mtext = NULL;
    size_t vlen, mlen;
    json_t *root = NULL;
    struct loader *L = NULL;
    sae_bpe *t = NULL;
    int rc;
    if ((rc = read_capped(vocab_json, &vtext, &vlen, err)) ||
        (rc = read_capped(merges_txt, &mtext, &mlen, err)) ||
        (rc = parse_json(vtext, vlen, vocab_json, &root, err)))
        goto out;
    L = malloc(sizeof *L);
    t = bpe_new();
    if (!L || !t) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", vocab_json);
        goto out;
    }
    loader_init(L, t, vocab_json);
    if ((rc = load_vocab(L, root, err)) || (rc = index_tokens(L, err)))
        goto out;
    L->name = merges_txt;
    if ((rc = load_merges_txt(L, mtext, mlen, err)))
        goto out;
    /* This pair of files has no added_tokens: GPT-2's <|endoftext|> is its one. */
    int32_t eot = sae_bpe_find(t, "<|endoftext|>", 13);
    if (eot >= 0) {
        if (!(t->added = malloc(sizeof *t->added))) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", vocab_json);
            goto out;
        }
        t->added[t->n_added++] = eot;
    }
    if ((rc = finish(t, err)))
        goto out;
    *out = t;
    t = NULL;
out:
    free(vtext);
    free(mtext);
    json_decref(root);
    free(L);
    sae_bpe_free(t);
    return rc;
}

/* Sets t's BOS from dir/tokenizer_config.json's bos_token (a string or
 * {"content": string}), when that file exists and names one. */
static int load_config_bos(sae_bpe *t, const char *path, sae_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    char *text;
    size_t len;
    json_t *root = NULL;
    int rc = read_capped(path, &text, &len, err);
    if (rc)
        return rc;
    rc = parse_json(text, len, path, &root, err);
    free(text);
    if (rc)
        return rc;
    json_t *bos = json_object_get(root, "bos_token");
    if (json_is_object(bos))
        bos = json_object_get(bos, "content");
    if (json_is_string(bos)) {
        int32_t id = sae_bpe_find(t, json_string_value(bos), json_string_length(bos));
        char q[200];
        if (id < 0)
            rc = sae_error_set(err, SAE_EFORMAT, "%s: bos_token %s is no token of the tokenizer",
                               path, quoted(json_string_value(bos), json_string_length(bos), q));
        else
            t->bos = id;
    } else if (bos && !json_is_null(bos)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: bos_token is not a string", path);
    }
    json_decref(root);
    return rc;
}

int sae_bpe_load(sae_bpe **out, const char *path, sae_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sae_error_set(err, SAE_EIO, "%s: %s", path, strerror(errno));
    sae_bpe *t = NULL;
    char *text = NULL;
    size_t len;
    int rc;
    if (!S_ISDIR(st.st_mode)) {
        if ((rc = read_capped(path, &text, &len, err)) == 0)
            rc = sae_bpe_load_json(out, text, len, path, err);
        free(text);
        return rc;
    }
    size_t n = strlen(path) + 32;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    snprintf(a, n, "%s/tokenizer.json", path);
    if (stat(a, &st) == 0) {
        if ((rc = read_capped(a, &text, &len, err)) == 0)
            rc = sae_bpe_load_json(&t, text, len, a, err);
    } else {
        snprintf(a, n, "%s/vocab.json", path);
        snprintf(b, n, "%s/merges.txt", path);
        if (stat(a, &st) != 0 || stat(b, &st) != 0) {
            rc = sae_error_set(err, SAE_EIO, "%s: holds no tokenizer.json, nor vocab.json and "
                               "merges.txt", path);
            goto out;
        }
        rc = sae_bpe_load_files(&t, a, b, err);
    }
    if (rc)
        goto out;
    snprintf(a, n, "%s/tokenizer_config.json", path);
    if ((rc = load_config_bos(t, a, err)))
        goto out;
    *out = t;
    t = NULL;
out:
    free(text);
    free(a);
    free(b);
    sae_bpe_free(t);
    return rc;
}
