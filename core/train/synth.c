/* synth.c: `sae synth` (tokenizer, planted features, the four output files)
 * and the decoder-vs-truth matching used to score trained SAEs. The rules are
 * documented in synth.h; the feature table is below, each label beside the
 * rule that plants it. */
#include "train/synth.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/outfile.h"
#include "io/rng.h"
#include "io/safetensors.h"

/* ---- word lists (disjoint; matched on the ASCII-lowercased word) ---- */

static const char *const list_pronoun[] = {
    "i", "me", "my", "mine", "you", "your", "yours", "yourself", "he", "him", "his", "she",
    "her", "hers", "it", "its", "itself", "we", "us", "our", "ours", "they", "them", "their",
    "theirs", "themselves", NULL};
static const char *const list_demonstrative[] = {
    "this", "that", "these", "those", "which", "who", "whom", "whose", "what", "whatever",
    "whoever", "whichever", NULL};
static const char *const list_negation[] = {
    "not", "no", "nor", "never", "none", "neither", "nothing", "cannot", "without", "nobody",
    NULL};
static const char *const list_modal[] = {
    "may", "might", "must", "shall", "should", "will", "would", "can", "could", NULL};
static const char *const list_article[] = {"the", "a", "an", NULL};
static const char *const list_be[] = {
    "is", "are", "be", "been", "being", "was", "were", "am", NULL};
static const char *const list_have_do[] = {
    "has", "have", "had", "having", "do", "does", "did", "done", "doing", NULL};
static const char *const list_coord[] = {"and", "or", "but", "yet", "either", "so", NULL};
static const char *const list_subord[] = {
    "if", "unless", "whether", "provided", "although", "though", "because", "since", "while",
    "where", "when", "whenever", "wherever", "until", "except", "otherwise", "as", NULL};
static const char *const list_preposition[] = {
    "of", "to", "in", "for", "on", "with", "by", "from", "at", "under", "into", "upon",
    "about", "through", "between", "against", "within", "over", "after", "before", "via",
    "among", "during", "per", "than", "onto", "throughout", "beyond", NULL};
static const char *const list_quantifier[] = {
    "all", "any", "each", "every", "some", "other", "others", "many", "more", "most", "only",
    "few", "several", "same", "own", "whole", "entire", "another", "both", "such", "less",
    "least", "much", NULL};
static const char *const list_legal[] = {
    "license", "licenses", "licensed", "licensing", "licensee", "licensees", "licensor",
    "licensors", "copyright", "copyrights", "copyrighted", "warranty", "warranties",
    "liability", "liable", "law", "laws", "legal", "court", "courts", "jurisdiction", "patent",
    "patents", "trademark", "trademarks", "agreement", "contract", "party", "parties",
    "damages", "claim", "claims", "infringement", "infringe", "infringed", "rights", "terms",
    "notice", "notices", "applicable", "governed", "statute", NULL};
static const char *const list_software[] = {
    "software", "program", "programs", "source", "code", "library", "libraries", "binary",
    "executable", "object", "compile", "compiled", "compiler", "computer", "interface",
    "interfaces", "file", "files", "version", "versions", "data", "machine", "hardware",
    "system", "systems", "application", "applications", "module", "modules", "package",
    "network", "server", "installation", "header", "linked", "linking", NULL};
static const char *const list_copying[] = {
    "copy", "copies", "copying", "copied", "distribute", "distributed", "distributing",
    "distribution", "distributions", "redistribute", "redistribution", "redistributions",
    "modify", "modified", "modifying", "modification", "modifications", "convey", "conveyed",
    "conveying", "propagate", "propagation", "publish", "published", "sublicense", "share",
    "sell", "sale", "transfer", "reproduce", "reproduction", NULL};
static const char *const list_permission[] = {
    "permission", "permissions", "permit", "permitted", "permits", "allow", "allowed",
    "allows", "grant", "granted", "grants", "granting", "authorize", "authorized", "accept",
    "accepted", "acceptance", "consent", "entitled", NULL};
static const char *const list_obligation[] = {
    "require", "required", "requires", "requirement", "requirements", "obligation",
    "obligations", "comply", "compliance", "responsible", "responsibility", "need", "needed",
    "necessary", "ensure", "condition", "conditions", "conditioned", "subject", "accordance",
    NULL};
static const char *const list_person[] = {
    "person", "persons", "people", "author", "authors", "contributor", "contributors",
    "holder", "holders", "owner", "owners", "user", "users", "recipient", "recipients",
    "developer", "developers", "individual", "entity", "entities", "organization", "anyone",
    "everyone", "someone", "publisher", "affirmer", NULL};
static const char *const list_freedom[] = {
    "free", "freedom", "freedoms", "freely", "open", "public", "general", "charge", NULL};
static const char *const list_work[] = {
    "work", "works", "material", "materials", "content", "contents", "document", "documents",
    "documentation", "text", "texts", "manual", "book", "covered", "section",
    "sections", "paragraph", "form", "forms", NULL};
static const char *const list_time[] = {
    "time", "times", "date", "dates", "year", "years", "day", "days", "period", "later",
    "prior", "previous", "future", "now", "then", "new", "current", "effective", "terminate",
    "terminated", "termination", "immediately", "already", NULL};
static const char *const list_change[] = {
    "change", "changes", "changed", "changing", "alter", "altered", "amend", "amended",
    "revise", "revised", "revision", "revisions", "update", "updated", "translate",
    "translation", "translations", "translated", "derivative", "derived", "based", NULL};
static const char *const list_disclaimer[] = {
    "merchantability", "fitness", "particular", "purpose", "implied", "express", "expressly",
    "limited", "limitation", "limitations", "disclaimer", "disclaim", "disclaimed", "disclaims",
    "warranted", "indirect", "incidental", "consequential", "special", "exemplary", NULL};
static const char *const list_making[] = {
    "use", "used", "uses", "using", "make", "made", "makes", "making", "run", "running",
    "create", "created", "apply", "applies", "applied", "include", "includes", "included",
    "including", "contain", "contains", "containing", "provide", "provides", "give", "given",
    "gives", "receive", "received", "keep", "offer", "add", NULL};

static const struct {
    const char *label;
    const char *const *words;
} lists[] = {
    {"personal or possessive pronoun (I, you, it, their...)", list_pronoun},
    {"demonstrative or relative pronoun (this, that, which, who...)", list_demonstrative},
    {"negation (not, no, nor, never, without...)", list_negation},
    {"modal verb (may, must, shall, will...)", list_modal},
    {"article (the, a, an)", list_article},
    {"form of 'to be' (is, are, be, been...)", list_be},
    {"form of 'to have' or 'to do' (has, have, does, done...)", list_have_do},
    {"coordinating conjunction (and, or, but...)", list_coord},
    {"subordinating conjunction (if, unless, whether, where...)", list_subord},
    {"preposition (of, to, in, for, by...)", list_preposition},
    {"quantifier (all, any, each, other, such...)", list_quantifier},
    {"legal term (license, copyright, warranty, patent...)", list_legal},
    {"software term (program, source, code, library...)", list_software},
    {"copying or distribution verb (copy, distribute, modify, convey...)", list_copying},
    {"permission or grant (permission, permit, allow, grant...)", list_permission},
    {"obligation or condition (require, comply, conditions...)", list_obligation},
    {"person or party (author, user, holder, recipient...)", list_person},
    {"freedom or openness (free, freedom, public, general...)", list_freedom},
    {"work or material (work, document, text, section...)", list_work},
    {"time word (date, year, period, termination...)", list_time},
    {"change word (change, alter, revise, translation...)", list_change},
    {"warranty-disclaimer word (merchantability, fitness, implied...)", list_disclaimer},
    {"verb of making or using (use, make, include, provide...)", list_making},
};
#define N_LISTS (sizeof lists / sizeof lists[0])
/* lists the context rules refer to, by their place in the table above */
enum { L_PRONOUN = 0, L_NEGATION = 2, L_MODAL = 3, L_ARTICLE = 4, L_COORD = 7 };

/* Numbers in words count as numbers (feature F_NUMBER), not as a word list. */
static const char *const number_words[] = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "first",
    "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "once", "twice", "zero", "hundred", "thousand", NULL};

/* ---- the feature table ---- */

enum {
    /* token classes */
    F_CAPITALISED, F_ALLCAPS, F_NUMBER, F_COMMA, F_STOP, F_COLON, F_LPAREN, F_RPAREN, F_QUOTE,
    F_DASH, F_SYMBOL, F_LONG_WORD, F_LETTER,
    /* word lists: F_LIST + list index */
    F_LIST,
    /* suffixes of words in no list */
    F_ING = F_LIST + N_LISTS, F_ED, F_TION, F_LY, F_MENT, F_PLURAL,
    /* position and context */
    F_DOC_FIRST, F_DOC_LAST, F_SENT_FIRST, F_SENT_SECOND, F_BEFORE_STOP, F_BEFORE_COMMA,
    F_IN_PARENS, F_IN_QUOTES, F_IN_ANGLE, F_AFTER_NUMBER, F_AFTER_COMMA, F_AFTER_ARTICLE,
    F_AFTER_MODAL, F_AFTER_OF, F_AFTER_TO, F_AFTER_NEGATION, F_AFTER_PRONOUN, F_AFTER_CONJUNCTION,
    F_AFTER_RPAREN, F_BEFORE_LPAREN, F_REPEATED, F_DEEP_IN_SENTENCE, F_SHORT_DOC,
    F_NUMBERED_DOC, F_LINE_FIRST, F_LINE_LAST,
    N_FEATURES
};

static const char *const fixed_labels[] = {
    [F_CAPITALISED] = "capitalised word inside a sentence",
    [F_ALLCAPS] = "all-capitals word (GNU, GPL, WARRANTY...)",
    [F_NUMBER] = "number, in digits or in words (42, two, first...)",
    [F_COMMA] = "comma",
    [F_STOP] = "full stop",
    [F_COLON] = "colon or semicolon",
    [F_LPAREN] = "opening parenthesis",
    [F_RPAREN] = "closing parenthesis",
    [F_QUOTE] = "quotation mark or apostrophe (also in contractions: 's, 't)",
    [F_DASH] = "hyphen, dash or slash",
    [F_SYMBOL] = "other punctuation or symbol (! ? < > * = @ ...)",
    [F_LONG_WORD] = "long word (12 letters or more)",
    [F_LETTER] = "single letter other than a and I",
    [F_ING] = "other word ending in -ing",
    [F_ED] = "other word ending in -ed",
    [F_TION] = "other word ending in -tion or -sion",
    [F_LY] = "other word ending in -ly",
    [F_MENT] = "other word ending in -ment, -ness, -ity, -able or -ible",
    [F_PLURAL] = "other word of four letters or more ending in -s",
    [F_DOC_FIRST] = "first token of a paragraph",
    [F_DOC_LAST] = "last token of a paragraph",
    [F_SENT_FIRST] = "first token of a sentence after . ! or ? (not of a paragraph)",
    [F_SENT_SECOND] = "second token of a sentence",
    [F_BEFORE_STOP] = "token right before a full stop",
    [F_BEFORE_COMMA] = "token right before a comma",
    [F_IN_PARENS] = "token inside parentheses",
    [F_IN_QUOTES] = "token inside quotation marks",
    [F_IN_ANGLE] = "token inside angle brackets (URLs, e-mail addresses)",
    [F_AFTER_NUMBER] = "token right after a number",
    [F_AFTER_COMMA] = "token right after a comma, colon or semicolon",
    [F_AFTER_ARTICLE] = "token right after an article",
    [F_AFTER_MODAL] = "token right after a modal verb",
    [F_AFTER_OF] = "token right after 'of'",
    [F_AFTER_TO] = "token right after 'to'",
    [F_AFTER_NEGATION] = "token right after a negation",
    [F_AFTER_PRONOUN] = "token right after a personal or possessive pronoun",
    [F_AFTER_CONJUNCTION] = "token right after a coordinating conjunction",
    [F_AFTER_RPAREN] = "token right after a closing parenthesis",
    [F_BEFORE_LPAREN] = "token right before an opening parenthesis",
    [F_REPEATED] = "word repeated from earlier in its sentence",
    [F_DEEP_IN_SENTENCE] = "token at position 30 or later in its sentence",
    [F_SHORT_DOC] = "token in a short paragraph (under 12 tokens, e.g. a heading)",
    [F_NUMBERED_DOC] = "token in a paragraph that starts with a number or '('",
    [F_LINE_FIRST] = "first token on a line of the source (not of a paragraph)",
    [F_LINE_LAST] = "last token on a line of the source (not of a paragraph)",
};

size_t sae_synth_n_features(void)
{
    return N_FEATURES;
}

const char *sae_synth_label(size_t i)
{
    if (i >= N_FEATURES)
        return NULL;
    if (i >= F_LIST && i < F_LIST + N_LISTS)
        return lists[i - F_LIST].label;
    return fixed_labels[i];
}

/* ---- tokenizer ---- */

/* Decodes one UTF-8 character at s[0..n) into *cp; returns its length (1 and
 * U+FFFD for an invalid or truncated sequence, an overlong form or a
 * surrogate). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
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
static bool is_letter(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= 0x80 && !(c >= 0x2000 && c <= 0x2bff) && c != 0xfffd);
}

/* ASCII digits: what numbers are made of. */
static bool is_digit(uint32_t c)
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
            size_t n = utf8_decode(s + i, eol - i, &cp);
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
                utf8_decode(s + i + n, eol - i - n, &next);
            if (is_letter(cp) || is_digit(cp) ||
                ((cp == '\'' || cp == 0x2019) && after_word && !space_before &&
                 is_letter(next))) {
                bool digits = is_digit(cp);
                tl += utf8_encode(cp, tok + tl);
                i += n;
                while (i < eol) {
                    size_t m = utf8_decode(s + i, eol - i, &cp);
                    if (digits ? !is_digit(cp) : !is_letter(cp))
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

/* ---- feature rules ---- */

enum { K_WORD, K_NUMBER, K_CONTRACTION, K_PUNCT };

/* What the rules look at in one token. */
typedef struct tok_info {
    const char *s;       /* the token without its leading space */
    size_t len;
    int kind;
    char lower[40];      /* ASCII-lowercased word ("" when longer than 39 bytes) */
    int list;            /* word list index, or −1 */
    bool number_word;    /* one of number_words */
    size_t letters;      /* characters in a word */
    bool cap, allcaps;
    bool sent_first;
    size_t sent_pos;     /* 0-based position in its sentence */
    bool in_parens, in_quotes, in_angle;
} tok_info;

/* The index of the word list holding the lowercased word w, or −1. */
static int find_list(const char *w)
{
    if (!*w)
        return -1;
    for (size_t l = 0; l < N_LISTS; l++)
        for (const char *const *p = lists[l].words; *p; p++)
            if ((*p)[0] == w[0] && !strcmp(*p, w))
                return (int)l;
    return -1;
}

/* True when w (n bytes) ends with suffix and has at least two more letters. */
static bool ends_with(const char *w, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k + 1 && !memcmp(w + n - k, suffix, k);
}

/* True when t is the punctuation token p. */
static bool is_punct(const tok_info *t, const char *p)
{
    return t->kind == K_PUNCT && !strcmp(t->s, p);
}

/* The suffix feature of a word in no list, or −1. */
static int suffix_feature(const tok_info *t)
{
    if (t->kind != K_WORD || t->list >= 0 || t->number_word || !t->lower[0])
        return -1;
    const char *w = t->lower;
    size_t n = strlen(w);
    if (ends_with(w, n, "ing"))
        return F_ING;
    if (ends_with(w, n, "ed"))
        return F_ED;
    if (ends_with(w, n, "tion") || ends_with(w, n, "sion"))
        return F_TION;
    if (ends_with(w, n, "ly"))
        return F_LY;
    if (ends_with(w, n, "ment") || ends_with(w, n, "ness") || ends_with(w, n, "ity") ||
        ends_with(w, n, "able") || ends_with(w, n, "ible"))
        return F_MENT;
    if (n >= 4 && w[n - 1] == 's' && w[n - 2] != 's')
        return F_PLURAL;
    return -1;
}

/* Fills info (n) for the tokens of d. */
static void describe(const sae_synth_doc *d, tok_info *info)
{
    size_t n = d->n_tokens, sent_pos = 0;
    int parens = 0;
    bool quotes = false, angle = false;
    for (size_t i = 0; i < n; i++) {
        tok_info *t = &info[i];
        memset(t, 0, sizeof *t);
        t->s = d->tokens[i][0] == ' ' ? d->tokens[i] + 1 : d->tokens[i];
        t->len = strlen(t->s);
        unsigned char c0 = (unsigned char)t->s[0];
        uint32_t cp;
        size_t cl = utf8_decode((const unsigned char *)t->s, t->len, &cp);
        if (is_digit(cp))
            t->kind = K_NUMBER;
        else if ((cp == '\'' || cp == 0x2019) && t->len > cl)
            t->kind = K_CONTRACTION;
        else if (is_letter(cp))
            t->kind = K_WORD;
        else
            t->kind = K_PUNCT;
        t->list = -1;
        if (t->kind == K_WORD) {
            size_t upper = 0, ascii = 0;
            for (const unsigned char *p = (const unsigned char *)t->s; *p; p++) {
                t->letters += (*p & 0xc0) != 0x80;
                ascii += *p < 0x80;
                upper += *p >= 'A' && *p <= 'Z';
            }
            t->cap = c0 >= 'A' && c0 <= 'Z';
            t->allcaps = t->letters >= 2 && upper == t->letters && ascii == t->len;
            if (t->len < sizeof t->lower) {
                for (size_t k = 0; k <= t->len; k++) {
                    char ch = t->s[k];
                    t->lower[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
                }
                t->list = find_list(t->lower);
                for (const char *const *p = number_words; *p && !t->number_word; p++)
                    t->number_word = !strcmp(*p, t->lower);
            }
        }
        /* sentences: a new one starts after . ! or ? */
        if (i == 0 || (info[i - 1].kind == K_PUNCT && strchr(".!?", info[i - 1].s[0]) &&
                       info[i - 1].len == 1))
            sent_pos = 0;
        t->sent_first = sent_pos == 0;
        t->sent_pos = sent_pos++;
        /* brackets: the bracket tokens themselves are outside */
        bool q = t->kind == K_PUNCT && (!strcmp(t->s, "\"") || !strcmp(t->s, "\xe2\x80\x9c") ||
                                        !strcmp(t->s, "\xe2\x80\x9d"));
        if (is_punct(t, "("))
            parens++;
        else if (is_punct(t, ")"))
            parens = parens > 0 ? parens - 1 : 0;
        else if (is_punct(t, "<"))
            angle = true;
        else if (is_punct(t, ">"))
            angle = false;
        else if (q)
            quotes = !quotes;
        else {
            t->in_parens = parens > 0;
            t->in_quotes = quotes;
            t->in_angle = angle;
        }
    }
}

void sae_synth_active(const sae_synth_doc *d, uint8_t *active)
{
    size_t n = d->n_tokens;
    memset(active, 0, n * N_FEATURES);
    tok_info *info = malloc(n * sizeof *info);
    if (!info)
        return; /* only reachable out of memory; every row is then featureless */
    describe(d, info);
    bool numbered = n && (info[0].kind == K_NUMBER || is_punct(&info[0], "("));
    for (size_t i = 0; i < n; i++) {
        const tok_info *t = &info[i], *prev = i ? &info[i - 1] : NULL;
        const tok_info *next = i + 1 < n ? &info[i + 1] : NULL;
        uint8_t *a = active + i * N_FEATURES;
        /* token classes */
        if (t->kind == K_WORD) {
            if (t->allcaps)
                a[F_ALLCAPS] = 1;
            else if (t->cap && !t->sent_first)
                a[F_CAPITALISED] = 1;
            if (t->letters >= 12)
                a[F_LONG_WORD] = 1;
            if (t->letters == 1 && strcmp(t->lower, "a") && strcmp(t->lower, "i"))
                a[F_LETTER] = 1;
            if (t->list >= 0)
                a[F_LIST + t->list] = 1;
            if (t->number_word)
                a[F_NUMBER] = 1;
            int sf = suffix_feature(t);
            if (sf >= 0)
                a[sf] = 1;
        } else if (t->kind == K_NUMBER) {
            a[F_NUMBER] = 1;
        } else if (t->kind == K_CONTRACTION) {
            a[F_QUOTE] = 1;
        } else if (is_punct(t, ",")) {
            a[F_COMMA] = 1;
        } else if (is_punct(t, ".")) {
            a[F_STOP] = 1;
        } else if (is_punct(t, ":") || is_punct(t, ";")) {
            a[F_COLON] = 1;
        } else if (is_punct(t, "(")) {
            a[F_LPAREN] = 1;
        } else if (is_punct(t, ")")) {
            a[F_RPAREN] = 1;
        } else if (is_punct(t, "\"") || is_punct(t, "`") || is_punct(t, "'") ||
                   is_punct(t, "\xe2\x80\x9c") || is_punct(t, "\xe2\x80\x9d")) {
            a[F_QUOTE] = 1;
        } else if (is_punct(t, "-") || is_punct(t, "\xe2\x80\x93") ||
                   is_punct(t, "\xe2\x80\x94") || is_punct(t, "/")) {
            a[F_DASH] = 1;
        } else {
            a[F_SYMBOL] = 1;
        }
        /* position and context */
        if (i == 0)
            a[F_DOC_FIRST] = 1;
        else if (t->sent_first)
            a[F_SENT_FIRST] = 1;
        if (i + 1 == n)
            a[F_DOC_LAST] = 1;
        if (t->sent_pos == 1)
            a[F_SENT_SECOND] = 1;
        if (t->sent_pos >= 30)
            a[F_DEEP_IN_SENTENCE] = 1;
        if (next && is_punct(next, "."))
            a[F_BEFORE_STOP] = 1;
        if (next && is_punct(next, "("))
            a[F_BEFORE_LPAREN] = 1;
        if (next && is_punct(next, ","))
            a[F_BEFORE_COMMA] = 1;
        if (t->in_parens)
            a[F_IN_PARENS] = 1;
        if (t->in_quotes)
            a[F_IN_QUOTES] = 1;
        if (t->in_angle)
            a[F_IN_ANGLE] = 1;
        if (prev) {
            if (prev->kind == K_NUMBER)
                a[F_AFTER_NUMBER] = 1;
            if (is_punct(prev, ",") || is_punct(prev, ":") || is_punct(prev, ";"))
                a[F_AFTER_COMMA] = 1;
            if (is_punct(prev, ")"))
                a[F_AFTER_RPAREN] = 1;
            if (prev->list == L_ARTICLE)
                a[F_AFTER_ARTICLE] = 1;
            if (prev->list == L_MODAL)
                a[F_AFTER_MODAL] = 1;
            if (prev->list == L_NEGATION)
                a[F_AFTER_NEGATION] = 1;
            if (prev->list == L_PRONOUN)
                a[F_AFTER_PRONOUN] = 1;
            if (prev->list == L_COORD)
                a[F_AFTER_CONJUNCTION] = 1;
            if (!strcmp(prev->lower, "of"))
                a[F_AFTER_OF] = 1;
            if (!strcmp(prev->lower, "to"))
                a[F_AFTER_TO] = 1;
        }
        if (t->kind == K_WORD && t->lower[0]) {
            for (size_t j = i - t->sent_pos; j < i; j++)
                if (info[j].kind == K_WORD && !strcmp(info[j].lower, t->lower)) {
                    a[F_REPEATED] = 1;
                    break;
                }
        }
        if (n < 12)
            a[F_SHORT_DOC] = 1;
        if (numbered)
            a[F_NUMBERED_DOC] = 1;
        if (d->line_start[i] && i > 0)
            a[F_LINE_FIRST] = 1;
        if (d->line_end[i] && i + 1 < n)
            a[F_LINE_LAST] = 1;
    }
    free(info);
}

/* ---- writing ---- */

void sae_synth_opts_init(sae_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->noise = -1;
}

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

/* Joins dir and name into a new string, or NULL. */
static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Writes tokens.jsonl. */
static int write_tokens(const char *path, const sae_synth_corpus *c, sae_error *err)
{
    sae_outfile out;
    int rc = sae_outfile_open(&out, path, err);
    for (size_t i = 0; i < c->n_docs && !rc; i++) {
        const sae_synth_doc *d = &c->docs[i];
        json_t *o = json_object(), *toks = json_array();
        json_object_set_new(o, "id", json_string(d->id));
        for (size_t t = 0; t < d->n_tokens; t++)
            json_array_append_new(toks, json_string(d->tokens[t]));
        json_object_set_new(o, "tokens", toks);
        if (json_dumpf(o, out.fp, JSON_COMPACT | JSON_PRESERVE_ORDER) || fputc('\n', out.fp) == EOF)
            rc = sae_error_set(err, SAE_EIO, "%s: write failed", path);
        json_decref(o);
    }
    if (!rc)
        return sae_outfile_commit(&out, err);
    sae_outfile_abort(&out);
    return rc;
}

/* Writes truth.jsonl. */
static int write_truth_jsonl(const char *path, const size_t *counts, const float *mags,
                             sae_error *err)
{
    sae_outfile out;
    int rc = sae_outfile_open(&out, path, err);
    for (size_t i = 0; i < N_FEATURES && !rc; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer((json_int_t)i));
        json_object_set_new(o, "label", json_string(sae_synth_label(i)));
        json_object_set_new(o, "count", json_integer((json_int_t)counts[i]));
        json_object_set_new(o, "magnitude", json_real(mags[i]));
        if (json_dumpf(o, out.fp, JSON_COMPACT | JSON_PRESERVE_ORDER) || fputc('\n', out.fp) == EOF)
            rc = sae_error_set(err, SAE_EIO, "%s: write failed", path);
        json_decref(o);
    }
    if (!rc)
        return sae_outfile_commit(&out, err);
    sae_outfile_abort(&out);
    return rc;
}

int sae_synth_write(const sae_synth_opts *opts, const char *out_dir, sae_synth_summary *sum,
                    sae_error *err)
{
    sae_synth_opts o = *opts;
    if (!o.d_in)
        o.d_in = 256;
    if (!o.max_tokens)
        o.max_tokens = 200000;
    if (o.noise < 0)
        o.noise = 0.02;
    if (o.d_in > (1u << 20))
        return sae_error_set(err, SAE_EINVAL, "d_in %zu is too large (at most 2^20)", o.d_in);
    if (!isfinite(o.noise))
        return sae_error_set(err, SAE_EINVAL, "noise must be finite");

    char **paths = NULL, *text = NULL, *path = NULL;
    size_t n_paths = 0;
    sae_synth_corpus c = {0};
    float *x = NULL, *dirs = NULL, *mags = NULL;
    size_t *counts = NULL;
    uint8_t *active = NULL;
    sae_st_writer *w = NULL;
    int rc = 0;

    /* the text */
    if (o.texts && o.n_texts) {
        if (!(paths = calloc(o.n_texts, sizeof *paths))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < o.n_texts; i++) {
            if (!(paths[i] = strdup(o.texts[i]))) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
            n_paths++;
        }
    } else if ((rc = default_texts(SAE_SYNTH_DEFAULT_DIR, &paths, &n_paths, err))) {
        goto out;
    }
    for (size_t i = 0; i < n_paths && c.n_tokens < o.max_tokens; i++) {
        size_t len = 0;
        if ((rc = read_file(paths[i], &text, &len, err)))
            goto out;
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        if ((rc = sae_synth_tokenize(base, text, len, o.max_tokens, &c, err)))
            goto out;
        free(text);
        text = NULL;
    }
    if (!c.n_tokens) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: no tokens in the text", paths[0]);
        goto out;
    }

    /* the features: directions and magnitudes from the seed */
    size_t d_in = o.d_in, nf = N_FEATURES, bytes;
    if (sae_mul_size(c.n_tokens, d_in * sizeof(float), &bytes)) {
        rc = sae_error_set(err, SAE_ENOMEM, "activations size overflows");
        goto out;
    }
    x = malloc(bytes);
    dirs = malloc(nf * d_in * sizeof *dirs);
    mags = malloc(nf * sizeof *mags);
    counts = calloc(nf, sizeof *counts);
    if (!x || !dirs || !mags || !counts) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for %zu x %zu activations",
                           c.n_tokens, d_in);
        goto out;
    }
    sae_rng rng, tok_rng;
    sae_rng_seed(&rng, o.seed);
    sae_rng_seed(&tok_rng, o.seed ^ 0x746f6b656e73ull);
    for (size_t f = 0; f < nf; f++) {
        float *v = dirs + f * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++) {
            v[j] = (float)sae_rng_normal(&rng);
            s += (double)v[j] * v[j];
        }
        for (size_t j = 0; j < d_in; j++)
            v[j] = (float)(v[j] / sqrt(s));
        mags[f] = (float)(1.5 + 1.5 * sae_rng_uniform(&rng));
    }

    /* the activations, token by token */
    size_t row = 0, total_active = 0;
    for (size_t di = 0; di < c.n_docs; di++) {
        const sae_synth_doc *d = &c.docs[di];
        uint8_t *grown = realloc(active, d->n_tokens * nf);
        if (!grown) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        active = grown;
        sae_synth_active(d, active);
        for (size_t t = 0; t < d->n_tokens; t++, row++) {
            float *xr = x + row * d_in;
            for (size_t j = 0; j < d_in; j++)
                xr[j] = (float)(o.noise * sae_rng_normal(&tok_rng));
            for (size_t f = 0; f < nf; f++) {
                if (!active[t * nf + f])
                    continue;
                counts[f]++;
                total_active++;
                float coef = (float)(mags[f] * (0.5 + sae_rng_uniform(&tok_rng)));
                const float *v = dirs + f * d_in;
                for (size_t j = 0; j < d_in; j++)
                    xr[j] += coef * v[j];
            }
        }
    }

    /* the files */
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        rc = sae_error_set(err, SAE_EIO, "%s: %s", out_dir, strerror(errno));
        goto out;
    }
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)o.seed);
    if (!(w = sae_st_writer_new()) || !(path = join(out_dir, "activations.safetensors"))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t shape[2] = {c.n_tokens, d_in};
    if (sae_st_writer_add(w, "activations", SAE_DT_F32, 2, shape, x) ||
        sae_st_writer_meta(w, "generator", "sae synth") || sae_st_writer_meta(w, "seed", seed_s)) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sae_st_writer_save(w, path, err)))
        goto out;
    sae_st_writer_free(w);
    free(path);
    path = NULL;
    if (!(w = sae_st_writer_new()) || !(path = join(out_dir, "truth.safetensors"))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t dshape[2] = {nf, d_in}, mshape[1] = {nf};
    if (sae_st_writer_add(w, "directions", SAE_DT_F32, 2, dshape, dirs) ||
        sae_st_writer_add(w, "magnitudes", SAE_DT_F32, 1, mshape, mags) ||
        sae_st_writer_meta(w, "seed", seed_s)) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sae_st_writer_save(w, path, err)))
        goto out;
    free(path);
    if (!(path = join(out_dir, "truth.jsonl"))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_truth_jsonl(path, counts, mags, err)))
        goto out;
    free(path);
    if (!(path = join(out_dir, "tokens.jsonl"))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_tokens(path, &c, err)))
        goto out;

    if (sum) {
        memset(sum, 0, sizeof *sum);
        sum->n_files = n_paths;
        sum->n_docs = c.n_docs;
        sum->n_tokens = c.n_tokens;
        sum->n_features = nf;
        sum->d_in = d_in;
        for (size_t f = 0; f < nf; f++)
            sum->n_absent += counts[f] == 0;
        sum->mean_l0 = (double)total_active / (double)c.n_tokens;
    }
out:
    sae_st_writer_free(w);
    for (size_t i = 0; i < n_paths; i++)
        free(paths[i]);
    free(paths);
    free(text);
    free(path);
    sae_synth_corpus_free(&c);
    free(x);
    free(dirs);
    free(mags);
    free(counts);
    free(active);
    return rc;
}

/* ---- truth and matching ---- */

int sae_synth_load_truth(const char *path, float **dirs, size_t *n, size_t *d, char ***labels,
                         sae_error *err)
{
    struct stat st;
    char *file = NULL, *jsonl = NULL, *line = NULL;
    sae_st_file *f = NULL;
    float *out = NULL, *owned = NULL;
    char **labs = NULL;
    size_t rows = 0;
    FILE *jf = NULL;
    int rc = 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        file = join(path, "truth.safetensors");
    else
        file = strdup(path);
    if (!file) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sae_st_open(file, &f, err)))
        goto out;
    const sae_st_tensor *t = sae_st_find(f, "directions");
    if (!t || t->ndim != 2 || !t->shape[0] || !t->shape[1]) {
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: needs a 2-D tensor \"directions\" [n_features, d_in]", file);
        goto out;
    }
    rows = (size_t)t->shape[0];
    size_t cols = (size_t)t->shape[1];
    const float *data;
    if ((rc = sae_st_tensor_f32(f, t, &data, &owned, err)))
        goto out;
    if (!(out = malloc(rows * cols * sizeof *out))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(out, data, rows * cols * sizeof *out);
    if (labels) {
        /* truth.jsonl beside the tensors */
        const char *slash = strrchr(file, '/');
        size_t dl = slash ? (size_t)(slash - file) : 1;
        if (!(jsonl = malloc(dl + 16)) || !(labs = calloc(rows, sizeof *labs))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(jsonl, dl + 16, "%.*s/truth.jsonl", (int)dl, slash ? file : ".");
        if (!(jf = fopen(jsonl, "r"))) {
            rc = sae_error_set(err, SAE_EIO, "%s: %s", jsonl, strerror(errno));
            goto out;
        }
        size_t cap = 0, lineno = 0;
        ssize_t got;
        while ((got = getline(&line, &cap, jf)) > 0) {
            lineno++;
            json_error_t je;
            json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
            json_t *idx = json_object_get(o, "index"), *lab = json_object_get(o, "label");
            if (!json_is_integer(idx) || !json_is_string(lab) || json_integer_value(idx) < 0 ||
                (size_t)json_integer_value(idx) >= rows) {
                json_decref(o);
                rc = sae_error_set(err, SAE_EFORMAT,
                                   "%s: line %zu: needs \"index\" < %zu and \"label\"", jsonl,
                                   lineno, rows);
                goto out;
            }
            size_t i = (size_t)json_integer_value(idx);
            free(labs[i]);
            labs[i] = strdup(json_string_value(lab));
            json_decref(o);
            if (!labs[i]) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
        }
        for (size_t i = 0; i < rows; i++)
            if (!labs[i]) {
                rc = sae_error_set(err, SAE_EFORMAT, "%s: no label for feature %zu", jsonl, i);
                goto out;
            }
    }
    *dirs = out;
    out = NULL;
    *n = rows;
    *d = cols;
    if (labels) {
        *labels = labs;
        labs = NULL;
    }
out:
    if (jf)
        fclose(jf);
    if (labs)
        for (size_t i = 0; i < rows; i++)
            free(labs[i]);
    free(labs);
    free(line);
    free(jsonl);
    free(out);
    free(owned);
    sae_st_free(f);
    free(file);
    return rc;
}

/* Copies rows (n, d) into a new array with every row scaled to unit norm
 * (zero rows stay zero), or NULL. */
static float *unit_rows(const float *rows, size_t n, size_t d)
{
    float *u = malloc(n * d * sizeof *u);
    if (!u)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++)
            s += (double)rows[i * d + j] * rows[i * d + j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
        for (size_t j = 0; j < d; j++)
            u[i * d + j] = rows[i * d + j] * inv;
    }
    return u;
}

int sae_synth_match(const float *w_dec, size_t d_sae, const float *truth, size_t n_truth,
                    size_t d_in, uint32_t *best, float *best_cos, float *truth_cos,
                    double *mmcs, sae_error *err)
{
    if (!d_sae || !n_truth || !d_in)
        return sae_error_set(err, SAE_EINVAL, "match: empty decoder or truth");
    if (d_sae > INT32_MAX || n_truth > INT32_MAX || d_in > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "match: sizes must be below 2^31");
    float *a = unit_rows(w_dec, d_sae, d_in), *b = unit_rows(truth, n_truth, d_in);
    float *cos = NULL, *tbest = NULL;
    int rc = 0;
    size_t cells;
    if (sae_mul_size(d_sae, n_truth, &cells) || !a || !b ||
        !(cos = malloc(cells * sizeof *cos)) || !(tbest = malloc(n_truth * sizeof *tbest))) {
        rc = sae_error_set(err, SAE_ENOMEM, "match: out of memory");
        goto out;
    }
    /* cos (d_sae, n_truth) = a · bᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d_sae, (int)n_truth, (int)d_in, 1,
                a, (int)d_in, b, (int)d_in, 0, cos, (int)n_truth);
    for (size_t t = 0; t < n_truth; t++)
        tbest[t] = -2;
    for (size_t i = 0; i < d_sae; i++) {
        const float *row = cos + i * n_truth;
        size_t arg = 0;
        for (size_t t = 0; t < n_truth; t++) {
            if (row[t] > row[arg])
                arg = t;
            if (row[t] > tbest[t])
                tbest[t] = row[t];
        }
        if (best)
            best[i] = (uint32_t)arg;
        if (best_cos)
            best_cos[i] = row[arg];
    }
    double total = 0;
    for (size_t t = 0; t < n_truth; t++) {
        total += tbest[t];
        if (truth_cos)
            truth_cos[t] = tbest[t];
    }
    if (mmcs)
        *mmcs = total / (double)n_truth;
out:
    free(a);
    free(b);
    free(cos);
    free(tbest);
    return rc;
}
