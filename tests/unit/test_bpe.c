/* test_bpe.c: GPT-2's byte-level BPE tokenizer (core/lm/bpe.c, bpe_load.c)
 * on small hand-made vocabularies with exact expected tokens: merge order,
 * bytes without merges, GPT-2's pre-tokenization rule (contractions, runs of
 * one class, white space runs, Unicode classes, invalid UTF-8), special
 * tokens and BOS, both file forms, and hostile files refused naming the file.
 * The id-for-id check against an independent implementation on GPT-2's own
 * vocabulary is tests/lm/tokenizer. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lm/bpe.h"
#include "unit.h"

/* ---- building vocabularies --------------------------------------------------- */

/* A byte string in GPT-2's vocabulary form (bytes_to_unicode), into out. */
static const char *vocab_form(const char *bytes, size_t n, char *out)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned b = (unsigned char)bytes[i], cp = b, k = 256;
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
            for (unsigned c = 0; c < b; c++)
                k += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
            cp = k;
        }
        if (cp < 0x80) {
            out[at++] = (char)cp;
        } else {
            out[at++] = (char)(0xC0 | cp >> 6);
            out[at++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[at] = '\0';
    return out;
}

/* Adds to vocab and merges the merge of word[0 .. k) and word[k .. n), the
 * new token getting id *next, unless the vocabulary has it already. */
static void add_merge(json_t *vocab, json_t *merges, const char *word, size_t k, size_t n,
                      int *next)
{
    char a[256], b[256], ab[512], m[600];
    vocab_form(word, k, a);
    vocab_form(word + k, n - k, b);
    vocab_form(word, n, ab);
    if (json_object_get(vocab, ab))
        return;
    json_object_set_new(vocab, ab, json_integer((*next)++));
    snprintf(m, sizeof m, "%s %s", a, b);
    json_array_append_new(merges, json_string(m));
}

/* A tokenizer.json whose ids 0..255 are the bytes 0..255, then, for each word
 * (raw bytes), the merges that build it: first each UTF-8 character from its
 * bytes, then the word from its characters left to right (c0 c1, c0c1 c2,
 * ...), each new token the next id in merge order; then the added tokens
 * after them. Returns the JSON text (caller frees). */
static char *vocab_json(const char *const *words, const char *const *added)
{
    json_t *vocab = json_object(), *merges = json_array();
    char a[8];
    for (int c = 0; c < 256; c++) {
        char byte = (char)c;
        json_object_set_new(vocab, vocab_form(&byte, 1, a), json_integer(c));
    }
    int next = 256;
    for (size_t w = 0; words && words[w]; w++) {
        const char *word = words[w];
        size_t n = strlen(word), prev_end = 0;
        for (size_t i = 0; i < n;) { /* a character: a byte and its continuation bytes */
            size_t end = i + 1;
            while (end < n && ((unsigned char)word[end] & 0xC0) == 0x80)
                end++;
            for (size_t k = i + 1; k < end; k++)
                add_merge(vocab, merges, word + i, k - i, k + 1 - i, &next);
            if (i > 0)
                add_merge(vocab, merges, word, prev_end, end, &next);
            prev_end = end;
            i = end;
        }
    }
    json_t *add = json_array();
    for (size_t i = 0; added && added[i]; i++)
        json_array_append_new(add, json_pack("{s:i, s:s, s:b}", "id", next++, "content", added[i],
                                             "special", 1));
    json_t *root = json_pack("{s:o, s:n, s:{s:s, s:b, s:b}, s:{s:s, s:o, s:o}}", "added_tokens",
                             add, "normalizer", "pre_tokenizer", "type", "ByteLevel",
                             "add_prefix_space", 0, "use_regex", 1, "model", "type", "BPE",
                             "vocab", vocab, "merges", merges);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

/* Loads vocab_json(words, added) or fails the test. */
static sae_bpe *tok_of(const char *const *words, const char *const *added)
{
    char *text = vocab_json(words, added);
    sae_bpe *t = NULL;
    sae_error err;
    int rc = sae_bpe_load_json(&t, text, strlen(text), "test.json", &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    free(text);
    return t;
}

/* Encodes text[0 .. n) and renders the tokens as their bytes joined by '|'
 * (into a static buffer), after checking that the ids decode to the text. */
static const char *pieces_n(const sae_bpe *t, const char *text, size_t n, unsigned flags)
{
    static char out[4096];
    int32_t *ids;
    size_t n_ids;
    sae_error err;
    ck_assert_int_eq(sae_bpe_encode(t, text, n, flags, &ids, &n_ids, &err), 0);
    ck_assert_uint_le(n_ids, n + 1);
    size_t at = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t len;
        const char *b = sae_bpe_token(t, ids[i], &len);
        ck_assert_ptr_nonnull(b);
        if (i)
            out[at++] = '|';
        ck_assert_uint_lt(at + len, sizeof out - 1);
        memcpy(out + at, b, len);
        at += len;
    }
    out[at] = '\0';
    char *back;
    size_t blen;
    ck_assert_int_eq(sae_bpe_decode(t, ids, n_ids, &back, &blen, &err), 0);
    if (!(flags & SAE_BPE_BOS))
        ck_assert(blen == n && memcmp(back, text, n) == 0);
    free(back);
    free(ids);
    return out;
}

static const char *pieces(const sae_bpe *t, const char *text)
{
    return pieces_n(t, text, strlen(text), 0);
}

/* The ids of text, as "1 2 3" (into a static buffer). */
static const char *ids_of(const sae_bpe *t, const char *text, unsigned flags)
{
    static char out[1024];
    int32_t *ids;
    size_t n;
    sae_error err;
    ck_assert_int_eq(sae_bpe_encode(t, text, strlen(text), flags, &ids, &n, &err), 0);
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(out + at, sizeof out - at, i ? " %d" : "%d", ids[i]);
    free(ids);
    return out;
}

/* ---- merges ------------------------------------------------------------------- */

START_TEST(test_merges_apply_by_rank)
{
    /* "a b" before "b c": abc -> ab|c; the other order: a|bc. */
    sae_bpe *t = tok_of((const char *const[]){"ab", "bc", NULL}, NULL);
    ck_assert_str_eq(ids_of(t, "abc", 0), "256 99");
    ck_assert_str_eq(pieces(t, "abcbc"), "ab|c|bc");
    sae_bpe_free(t);
    t = tok_of((const char *const[]){"bc", "ab", NULL}, NULL);
    ck_assert_str_eq(ids_of(t, "abc", 0), "97 256");
    sae_bpe_free(t);
    /* Chains build the whole word; an unmerged byte stays a byte token. */
    t = tok_of((const char *const[]){"hello", NULL}, NULL);
    ck_assert_str_eq(ids_of(t, "hello", 0), "259");
    ck_assert_str_eq(pieces(t, "helloo"), "hello|o");
    ck_assert_str_eq(pieces(t, "hellhello"), "hell|hello");
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_every_occurrence_of_a_pair_merges_before_the_next)
{
    /* encoder.py merges every occurrence of the best pair, left to right, before it
     * looks again: with "aa a" ranked before "a a", aaaa is aa|aa (a heap that took
     * the new pair (aa, a) at once would make aaa|a), and aaa is aa|a. */
    static const char *merges[] = {"aa a", "a a"};
    json_t *vocab = json_object();
    char a[8];
    for (int c = 0; c < 256; c++) {
        char byte = (char)c;
        json_object_set_new(vocab, vocab_form(&byte, 1, a), json_integer(c));
    }
    json_object_set_new(vocab, "aaa", json_integer(256));
    json_object_set_new(vocab, "aa", json_integer(257));
    json_t *root = json_pack("{s:{s:s}, s:{s:o, s:[s, s]}}", "pre_tokenizer", "type", "ByteLevel",
                             "model", "vocab", vocab, "merges", merges[0], merges[1]);
    char *text = json_dumps(root, 0);
    sae_bpe *t;
    sae_error err;
    ck_assert_int_eq(sae_bpe_load_json(&t, text, strlen(text), "x", &err), 0);
    ck_assert_str_eq(ids_of(t, "aaaa", 0), "257 257");
    ck_assert_str_eq(ids_of(t, "aaa", 0), "257 97");
    ck_assert_str_eq(ids_of(t, "aaaaa", 0), "257 257 97");
    free(text);
    json_decref(root);
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_bytes_without_merges_are_byte_tokens)
{
    sae_bpe *t = tok_of(NULL, NULL);
    ck_assert_str_eq(ids_of(t, "xyz", 0), "120 121 122");
    ck_assert_str_eq(ids_of(t, "\xc3\xa9", 0), "195 169"); /* é: two bytes, no merge */
    ck_assert_str_eq(ids_of(t, "", 0), "");
    ck_assert_uint_eq(sae_bpe_vocab_size(t), 256);
    sae_bpe_free(t);
}
END_TEST

/* ---- the pre-tokenization rule -------------------------------------------------- */

/* Every word a test below expects as one token. */
static const char *const words[] = {"don", "'t", "'s", "'re", "'ll", "DON", "'''", " world",
    "world", "hello", "!!!", " ok", "  ", "   ", " 42", "42", " \xc2\xa0", "\n\n", "  \n",
    "\xc3\xa9t\xc3\xa9", " \xef\xbb\xbf", "\xef\xbb\xbf\xef\xbb\xbf", " \xf0\x91\xbc\x84\xf0\x91\xbc\x85",
    "\xc2\xb2\xc2\xb3", " \xff\xfe", "\t\t", "\xc2\x85", "\xc2\xa0", "\xe2\x80\xa8",
    "\xe2\x80\x99", "it", " '", NULL};

START_TEST(test_contractions)
{
    sae_bpe *t = tok_of(words, NULL);
    ck_assert_str_eq(pieces(t, "don't"), "don|'t");
    ck_assert_str_eq(pieces(t, "DON'T"), "DON|'|T"); /* contractions are lower case only */
    ck_assert_str_eq(pieces(t, "'s'''t"), "'s|'''|t");
    ck_assert_str_eq(pieces(t, "'re'll"), "'re|'ll");
    ck_assert_str_eq(pieces(t, "'ret"), "'re|t");
    ck_assert_str_eq(pieces(t, " 's"), " '|s"); /* the space takes the apostrophe */
    ck_assert_str_eq(pieces(t, "it\xe2\x80\x99s"), "it|\xe2\x80\x99|s"); /* U+2019 is not ' */
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_runs_of_one_class)
{
    sae_bpe *t = tok_of(words, NULL);
    ck_assert_str_eq(pieces(t, "hello world"), "hello| world");
    ck_assert_str_eq(pieces(t, "hello!!! ok"), "hello|!!!| ok");
    ck_assert_str_eq(pieces(t, "world42 42"), "world|42| 42");
    ck_assert_str_eq(pieces(t, "x\xc2\xb2\xc2\xb3"), "x|\xc2\xb2\xc2\xb3"); /* ²³ are numbers */
    ck_assert_str_eq(pieces(t, "\xc3\xa9t\xc3\xa9!"), "\xc3\xa9t\xc3\xa9|!");
    /* Kawi (Unicode 15) letters are letters. */
    ck_assert_str_eq(pieces(t, " \xf0\x91\xbc\x84\xf0\x91\xbc\x85"),
                     " \xf0\x91\xbc\x84\xf0\x91\xbc\x85");
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_white_space_runs)
{
    sae_bpe *t = tok_of(words, NULL);
    /* A run before a word gives its last space to the word. */
    ck_assert_str_eq(pieces(t, "  world"), " | world");
    ck_assert_str_eq(pieces(t, "    world"), "   | world");
    ck_assert_str_eq(pieces(t, "   42"), "  | 42");
    /* Other white space before a word stands alone. */
    ck_assert_str_eq(pieces(t, "a\n\nb"), "a|\n|\n|b");
    ck_assert_str_eq(pieces(t, "x \xc2\xa0y"), "x| |\xc2\xa0|y");
    ck_assert_str_eq(pieces(t, "a\xe2\x80\xa8\xe2\x80\xa8" "b"), "a|\xe2\x80\xa8|\xe2\x80\xa8|b");
    /* At the end, and before more white space, the run is whole. */
    ck_assert_str_eq(pieces(t, "a  \n"), "a|  \n");
    ck_assert_str_eq(pieces(t, "a\n\n"), "a|\n\n");
    ck_assert_str_eq(pieces(t, "\t\t"), "\t\t");
    ck_assert_str_eq(pieces(t, "a\r\nb"), "a|\r|\n|b");
    /* White_Space: U+0085 is white space, U+FEFF and U+001C are not. */
    ck_assert_str_eq(pieces(t, "a\xc2\x85" "b"), "a|\xc2\x85|b");
    ck_assert_str_eq(pieces(t, "a \xef\xbb\xbf"), "a| \xef\xbb\xbf");
    ck_assert_str_eq(pieces(t, "\xef\xbb\xbf\xef\xbb\xbfok"), "\xef\xbb\xbf\xef\xbb\xbf|o|k");
    ck_assert_str_eq(pieces(t, "a\x1c\x1c"), "a|\x1c|\x1c");
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_invalid_utf8_bytes_are_other_characters)
{
    /* Each byte of a bad sequence is a character of its own, neither letter, number
     * nor space, and goes through the byte-to-unicode map as any byte does. */
    sae_bpe *t = tok_of(words, NULL);
    ck_assert_str_eq(ids_of(t, "a\xff" "b", 0), "97 255 98");
    ck_assert_str_eq(pieces(t, " \xff\xfe"), " \xff\xfe");
    ck_assert_str_eq(pieces_n(t, "\xc3\xa9\xff", 3, 0), "\xc3\xa9|\xff");
    ck_assert_str_eq(pieces(t, "\xe2\x82" "a"), "\xe2|\x82|a");          /* cut short */
    ck_assert_str_eq(pieces(t, "\xc0\xaf"), "\xc0|\xaf");                /* overlong */
    ck_assert_str_eq(pieces(t, "\xed\xa0\x80"), "\xed|\xa0|\x80");       /* a surrogate */
    ck_assert_str_eq(pieces(t, "\xf4\x90\x80\x80"), "\xf4|\x90|\x80|\x80"); /* past U+10FFFF */
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_any_bytes_round_trip)
{
    sae_bpe *t = tok_of(words, (const char *const[]){"<|endoftext|>", NULL});
    char buf[64];
    unsigned x = 16;
    for (int k = 0; k < 2000; k++) {
        size_t n = (size_t)(k % 40);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = " '\n\xc2\xa0\x85\xffs"[(x >> 16) % 8] ^ (char)((x >> 28) & (k % 3 ? 0 : 0x7));
        }
        pieces_n(t, buf, n, 0);
        pieces_n(t, buf, n, SAE_BPE_SPECIAL);
    }
    sae_bpe_free(t);
}
END_TEST

/* ---- special tokens and BOS ------------------------------------------------------ */

START_TEST(test_special_tokens_only_when_asked)
{
    sae_bpe *t = tok_of(words, (const char *const[]){"<|endoftext|>", "<|x|>", "<|x|>y", NULL});
    int32_t eot = sae_bpe_find(t, "<|endoftext|>", 13);
    ck_assert_int_ge(eot, 256);
    ck_assert_int_eq(sae_bpe_bos(t), eot);
    char want[64];
    snprintf(want, sizeof want, "97 %d 98", eot);
    ck_assert_str_eq(ids_of(t, "a<|endoftext|>b", SAE_BPE_SPECIAL), want);
    /* Without the flag it is text. */
    ck_assert_str_eq(pieces(t, "a<|endoftext|>"), "a|<|||e|n|do|f|t|e|x|t|||>");
    /* Longest first; the bytes around a match are encoded on their own. */
    ck_assert_str_eq(pieces_n(t, "<|x|>yy <|x|>", 13, SAE_BPE_SPECIAL), "<|x|>y|y| |<|x|>");
    ck_assert_str_eq(pieces_n(t, " world<|x|>world", 16, SAE_BPE_SPECIAL),
                     " world|<|x|>|world");
    /* prepend_bos */
    snprintf(want, sizeof want, "%d 104", eot);
    ck_assert_str_eq(ids_of(t, "h", SAE_BPE_BOS), want);
    snprintf(want, sizeof want, "%d", eot);
    ck_assert_str_eq(ids_of(t, "", SAE_BPE_BOS), want);
    sae_error err;
    ck_assert_int_eq(sae_bpe_set_bos(t, 100000, &err), SAE_EINVAL);
    ck_assert_int_eq(sae_bpe_set_bos(t, -1, &err), 0);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(sae_bpe_encode(t, "h", 1, SAE_BPE_BOS, &ids, &n, &err), SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "BOS"));
    sae_bpe_free(t);
}
END_TEST

START_TEST(test_decode_gives_exact_bytes_and_refuses_unknown_ids)
{
    sae_bpe *t = tok_of(words, (const char *const[]){"<|endoftext|>", NULL});
    int32_t eot = sae_bpe_find(t, "<|endoftext|>", 13);
    int32_t ids[] = {255, 0, eot, 32};
    char *text;
    size_t len;
    sae_error err;
    ck_assert_int_eq(sae_bpe_decode(t, ids, 4, &text, &len, &err), 0);
    ck_assert_uint_eq(len, 16);
    ck_assert(memcmp(text, "\xff\0<|endoftext|> ", 16) == 0);
    free(text);
    int32_t bad[] = {1, eot + 1};
    ck_assert_int_eq(sae_bpe_decode(t, bad, 2, &text, &len, &err), SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "position 1"));
    bad[1] = -5;
    ck_assert_int_eq(sae_bpe_decode(t, bad, 2, &text, &len, &err), SAE_EINVAL);
    ck_assert_ptr_null(sae_bpe_token(t, eot + 1, &len));
    sae_bpe_free(t);
}
END_TEST

/* ---- file forms --------------------------------------------------------------------- */

/* Writes text to unit_dir/name; returns the path (caller frees). */
static char *put(const char *name, const char *text)
{
    char *p = unit_path(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

START_TEST(test_vocab_and_merges_files_match_tokenizer_json)
{
    /* The same vocabulary as vocab.json + merges.txt, in a folder. */
    char *json = vocab_json(words, (const char *const[]){"<|endoftext|>", NULL});
    json_t *root = json_loads(json, 0, NULL);
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_deep_copy(json_object_get(model, "vocab"));
    json_object_set_new(vocab, "<|endoftext|>",
                        json_copy(json_object_get(json_array_get(json_object_get(root,
                                  "added_tokens"), 0), "id")));
    char *vtext = json_dumps(vocab, 0);
    char *mtext = strdup("#version: 0.2\n");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(model, "merges"), i, m)
    {
        size_t n = strlen(mtext);
        mtext = realloc(mtext, n + json_string_length(m) + 3);
        sprintf(mtext + n, "%s\r\n", json_string_value(m));
    }
    free(put("vocab.json", vtext));
    free(put("merges.txt", mtext));
    sae_bpe *a, *b;
    sae_error err;
    ck_assert_int_eq(sae_bpe_load_json(&a, json, strlen(json), "t", &err), 0);
    ck_assert_msg(sae_bpe_load(&b, unit_dir, &err) == 0, "%s", err.msg);
    static const char *const texts[] = {"don't  world<|endoftext|>\n\n42 hello!!!",
        "\xff\xc3\xa9t\xc3\xa9 ok   "};
    for (int k = 0; k < 2; k++)
        for (unsigned f = 0; f < 4; f++) {
            char want[1024];
            snprintf(want, sizeof want, "%s", ids_of(a, texts[k], f));
            ck_assert_str_eq(ids_of(b, texts[k], f), want);
        }
    sae_bpe_free(b);
    /* tokenizer.json wins in a folder; tokenizer_config.json names the BOS. */
    free(put("tokenizer.json", json));
    free(put("tokenizer_config.json", "{\"bos_token\": {\"content\": \"don\"}}"));
    ck_assert_msg(sae_bpe_load(&b, unit_dir, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sae_bpe_bos(b), sae_bpe_find(b, "don", 3));
    sae_bpe_free(b);
    free(put("tokenizer_config.json", "{\"bos_token\": \"<s>\"}"));
    ck_assert_int_ne(sae_bpe_load(&b, unit_dir, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "tokenizer_config.json"));
    ck_assert_ptr_nonnull(strstr(err.msg, "'<s>'"));
    sae_bpe_free(a);
    free(json);
    free(vtext);
    free(mtext);
    json_decref(vocab);
    json_decref(root);
}
END_TEST

/* ---- hostile files ------------------------------------------------------------------- */

/* Loads text as name (a file in unit_dir) and checks it is refused with a
 * message naming the file and containing what. */
static void refused(const char *name, const char *text, const char *what)
{
    char *p = put(name, text);
    sae_bpe *t = NULL;
    sae_error err;
    int rc = sae_bpe_load(&t, p, &err);
    ck_assert_msg(rc != 0, "%s was accepted", text);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err.msg, p) != NULL, "'%s' does not name %s", err.msg, p);
    ck_assert_msg(strstr(err.msg, what) != NULL, "'%s' does not say '%s'", err.msg, what);
    free(p);
}

/* A tokenizer.json: the 256 bytes, then extra vocabulary entries (JSON
 * members, with a leading comma), the merges and added tokens as given. */
static char *hostile(const char *extra_vocab, const char *merges, const char *added)
{
    char *json = vocab_json(NULL, NULL);
    json_t *root = json_loads(json, 0, NULL);
    free(json);
    json_object_del(root, "added_tokens");
    json_object_del(json_object_get(root, "model"), "merges");
    char *base = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    /* base ends with "}}" (model, root): splice the rest in before them. */
    char *vend = strstr(base, "}}");
    ck_assert_ptr_nonnull(vend);
    char *out;
    ck_assert_int_ge(asprintf(&out, "%.*s%s}, \"merges\": %s}, \"added_tokens\": %s}",
                              (int)(vend - base), base, extra_vocab, merges, added), 0);
    free(base);
    return out;
}

START_TEST(test_hostile_tokenizer_json_refused)
{
    char *ok = hostile(", \"ab\": 256", "[\"a b\"]", "[]");
    sae_bpe *t;
    sae_error err;
    ck_assert_msg(sae_bpe_load_json(&t, ok, strlen(ok), "ok", &err) == 0, "%s: %s", ok, err.msg);
    ck_assert_str_eq(ids_of(t, "ab", 0), "256");
    sae_bpe_free(t);
    size_t n = strlen(ok);
    char *cut = strndup(ok, n / 2);
    refused("cut.json", cut, "not valid JSON");
    free(cut);
    free(ok);
    refused("array.json", "[1, 2]", "not a JSON object");
    refused("nomodel.json", "{\"vocab\": {}}", "no \"model\"");
    struct { const char *vocab, *merges, *added, *what; } cases[] = {
        {", \"ab\": 256", "[\"a b\", \"a zz\"]", "[]", "'zz' is not in the vocabulary"},
        {"", "[\"a b\"]", "[]", "the merge 'ab' is not in the vocabulary"},
        {", \"ab\": 97", "[]", "[]", "id 97 is already token 'a'"},
        {", \"ab\": 256, \"ab\": 257", "[]", "[]", "not valid JSON"}, /* duplicate key */
        {", \"ab\": 1073741824", "[]", "[]", "id 1073741824 is not in [0, 4194304)"},
        {", \"ab\": -1", "[]", "[]", "id -1 is not in"},
        {", \"ab\": \"1\"", "[]", "[]", "the id is not an integer"},
        {", \"\": 300", "[]", "[]", "is empty"},
        {"", "[\"ab\"]", "[]", "not \"a b\""},
        {"", "[\"a b c\"]", "[]", "not \"a b\""},
        {"", "[[\"a\"]]", "[]", "not \"a b\""},
        {"", "{}", "[]", "model.merges is not an array"},
        {"", "[]", "[{\"id\": 300, \"content\": \"\"}]", "added_tokens[0]"},
        {"", "[]", "[{\"id\": 97, \"content\": \"<s>\"}]", "id 97 is already token 'a'"},
        {"", "[]", "[{\"id\": 300, \"content\": \"a\"}]", "token 'a' has two ids, 97 and 300"},
        {"", "[]", "{}", "added_tokens is not an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = hostile(cases[i].vocab, cases[i].merges, cases[i].added);
        refused("hostile.json", text, cases[i].what);
        free(text);
    }
    /* A missing byte, and pipelines that are not GPT-2's. */
    char *text = vocab_json(NULL, NULL);
    char *g = strstr(text, "\"g\":103,");
    ck_assert_ptr_nonnull(g);
    memmove(g, g + 8, strlen(g + 8) + 1);
    refused("nobyte.json", text, "no token stands for the byte 0x67");
    free(text);
    text = vocab_json(NULL, NULL);
    static const char *const swaps[][3] = {
        {"\"add_prefix_space\":false", "\"add_prefix_space\":true", "pre_tokenizer"},
        {"\"use_regex\":true", "\"use_regex\":false", "pre_tokenizer"},
        {"\"type\":\"ByteLevel\"", "\"type\":\"Whitespace\"", "pre_tokenizer"},
        {"\"normalizer\":null", "\"normalizer\":{\"type\":\"NFC\"}", "normalizer"},
        {"\"type\":\"BPE\"", "\"type\":\"WordPiece\"", "model.type is WordPiece"},
        {"\"type\":\"BPE\"", "\"type\":\"BPE\",\"byte_fallback\":true", "byte_fallback"},
        {"\"type\":\"BPE\"", "\"type\":\"BPE\",\"end_of_word_suffix\":\"</w>\"",
         "end_of_word_suffix"},
    };
    for (size_t i = 0; i < sizeof swaps / sizeof *swaps; i++) {
        char *at = strstr(text, swaps[i][0]);
        ck_assert_msg(at != NULL, "%s", swaps[i][0]);
        char *swapped;
        ck_assert_int_ge(asprintf(&swapped, "%.*s%s%s", (int)(at - text), text, swaps[i][1],
                                  at + strlen(swaps[i][0])), 0);
        refused("pipeline.json", swapped, swaps[i][2]);
        free(swapped);
    }
    free(text);
}
END_TEST

START_TEST(test_hostile_files_refused)
{
    /* merges.txt: three tokens on a line, an unknown token; no files at all. */
    char *json = vocab_json(NULL, NULL);
    json_t *root = json_loads(json, 0, NULL);
    char *vtext = json_dumps(json_object_get(json_object_get(root, "model"), "vocab"), 0);
    char *v = put("vocab.json", vtext), *m = put("merges.txt", "#version: 0.2\na b c\n");
    sae_bpe *t = NULL;
    sae_error err;
    ck_assert_int_ne(sae_bpe_load_files(&t, v, m, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, m));
    ck_assert_ptr_nonnull(strstr(err.msg, "line 2"));
    free(put("merges.txt", "a b\nab c\n"));
    ck_assert_int_ne(sae_bpe_load_files(&t, v, m, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "line 1: the merge 'ab'"));
    free(put("vocab.json", "{\"a\": 0}"));
    ck_assert_int_ne(sae_bpe_load_files(&t, v, m, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, v));
    ck_assert_ptr_nonnull(strstr(err.msg, "byte 0x00"));
    ck_assert_ptr_null(t);
    unlink(v);
    unlink(m);
    ck_assert_int_ne(sae_bpe_load(&t, unit_dir, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "holds no tokenizer.json"));
    /* A file past the size cap is refused before it is read (a sparse file). */
    char *big = unit_path("big.json");
    FILE *f = fopen(big, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)SAE_BPE_MAX_FILE + 1), 0);
    fclose(f);
    ck_assert_int_eq(sae_bpe_load(&t, big, &err), SAE_ENOMEM);
    ck_assert_ptr_nonnull(strstr(err.msg, big));
    free(big);
    free(v);
    free(m);
    free(vtext);
    free(json);
    json_decref(root);
}
END_TEST

static Suite *bpe_suite(void)
{
    Suite *s = suite_create("bpe");
    TCase *tc = tcase_create("bpe");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_merges_apply_by_rank);
    tcase_add_test(tc, test_every_occurrence_of_a_pair_merges_before_the_next);
    tcase_add_test(tc, test_bytes_without_merges_are_byte_tokens);
    tcase_add_test(tc, test_contractions);
    tcase_add_test(tc, test_runs_of_one_class);
    tcase_add_test(tc, test_white_space_runs);
    tcase_add_test(tc, test_invalid_utf8_bytes_are_other_characters);
    tcase_add_test(tc, test_any_bytes_round_trip);
    tcase_add_test(tc, test_special_tokens_only_when_asked);
    tcase_add_test(tc, test_decode_gives_exact_bytes_and_refuses_unknown_ids);
    tcase_add_test(tc, test_vocab_and_merges_files_match_tokenizer_json);
    tcase_add_test(tc, test_hostile_tokenizer_json_refused);
    tcase_add_test(tc, test_hostile_files_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(bpe_suite());
}
