/* synth_rules.c: the planted features of `sae synth`: the word lists, the
 * feature table (each label beside the rule that plants it) and the rules
 * that say which features fire on each token of a document. The rules are
 * documented in synth.h and docs/TRAINING.md. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "train/synth_int.h"

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
        size_t cl = synth_utf8_decode((const unsigned char *)t->s, t->len, &cp);
        if (synth_is_digit(cp))
            t->kind = K_NUMBER;
        else if ((cp == '\'' || cp == 0x2019) && t->len > cl)
            t->kind = K_CONTRACTION;
        else if (synth_is_letter(cp))
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
