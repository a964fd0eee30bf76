/* synth.h: `sae synth`, activations with known answers over real text, and
 * matching a trained SAE's decoder against those answers (the code is in
 * synth_text.c, synth_rules.c, synth_write.c and synth_match.c).
 *
 * Text. By default every regular file (symbolic links skipped, as they repeat
 * other files) under /usr/share/common-licenses/, in name order; or the
 * files given. Each file is split into documents at blank lines (lines of
 * whitespace only): a document is a paragraph.
 *
 * Tokenizer (GPT-2-like, simple on purpose). The text is read as UTF-8; a byte
 * that does not start a valid sequence becomes U+FFFD. Within a document:
 *   - whitespace (space, tab, CR, LF, FF, VT) separates tokens and is dropped;
 *     a token that follows whitespace carries one leading space (" cat"), the
 *     document's first token none;
 *   - a word is a run of letters (ASCII letters and every non-ASCII
 *     character outside U+2000..U+2BFF, the punctuation and symbol blocks,
 *     and other than U+FFFD); a number is a run of ASCII digits;
 *   - an apostrophe directly between a word and letters starts a contraction
 *     token made of it and those letters ("licensee's" -> "licensee", "'s");
 *   - any other character is a token by itself (punctuation and symbols).
 * So "The Program (a copy)." gives "The", " Program", " (", "a", " copy",
 * ")", ".".
 *
 * Features. SAE_SYNTH_N_FEATURES planted features, each with a human label
 * and a rule over the document's tokens (sae_synth_label): token classes,
 * word lists, position and context. Each feature gets a random unit direction
 * in d_in dims and a magnitude m_j uniform in [1.5, 3]; a token's activation is
 *   x = Σ_{j active} m_j·u_tj·dir_j + ε,  u_tj uniform in [0.5, 1.5],
 *   ε ~ N(0, noise² I),
 * all from the seed. */
#ifndef SAE_SYNTH_H
#define SAE_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "sae/model.h"

#define SAE_SYNTH_DEFAULT_DIR "/usr/share/common-licenses"

/* Number of planted features (the rules are in synth_rules.c). */
size_t sae_synth_n_features(void);
/* The human label of feature i (< sae_synth_n_features()). */
const char *sae_synth_label(size_t i);

/* One document: its id and tokens, all owned. */
typedef struct sae_synth_doc {
    char *id;           /* "<file name>/<paragraph number, 0-based>" */
    size_t n_tokens;
    char **tokens;      /* (n_tokens) UTF-8 strings, leading space included */
    uint8_t *line_start; /* (n_tokens) 1 when the token begins a source line */
    uint8_t *line_end;   /* (n_tokens) 1 when the token ends a source line */
} sae_synth_doc;

/* A tokenized text: documents in order. */
typedef struct sae_synth_corpus {
    size_t n_docs, n_tokens;
    sae_synth_doc *docs; /* (n_docs) owned */
} sae_synth_corpus;

/* Tokenizes text[0..len) (one file, `name` used in document ids) and appends
 * its documents to c, stopping once c holds max_tokens tokens (0: no limit;
 * the last document may be cut). */
int sae_synth_tokenize(const char *name, const char *text, size_t len, size_t max_tokens,
                       sae_synth_corpus *c, sae_error *err);
void sae_synth_corpus_free(sae_synth_corpus *c);

/* Which features are active on each token of doc: active (n_tokens,
 * sae_synth_n_features()) gets 1 where feature j fires on token t, else 0. */
void sae_synth_active(const sae_synth_doc *doc, uint8_t *active);

typedef struct sae_synth_opts {
    const char *const *texts; /* files to read; NULL: the default corpus */
    size_t n_texts;
    size_t d_in;              /* default 256 */
    uint64_t seed;
    size_t max_tokens;        /* default 200,000 */
    double noise;             /* σ of the Gaussian noise; < 0: default 0.02 */
} sae_synth_opts;

/* Sets the defaults (d_in 0, max_tokens 0 and noise −1 mean "default"). */
void sae_synth_opts_init(sae_synth_opts *o);

/* What sae_synth_write made. */
typedef struct sae_synth_summary {
    size_t n_files, n_docs, n_tokens, n_features, d_in;
    size_t n_absent;          /* features that never fire on this text */
    double mean_l0;           /* planted features active per token */
} sae_synth_summary;

/* Writes out_dir (created if missing): activations.safetensors ("activations"
 * [n_tokens, d_in] F32), tokens.jsonl ({"id", "tokens"} per document),
 * truth.safetensors ("directions" [n_features, d_in], "magnitudes"
 * [n_features]) and truth.jsonl ({"index", "label", "count", "magnitude"}).
 * Deterministic for given options and text. */
int sae_synth_write(const sae_synth_opts *o, const char *out_dir, sae_synth_summary *sum,
                    sae_error *err);

/* Loads truth.safetensors's "directions" from path (the file, or the folder
 * holding it) into *dirs (n, d), owned by the caller; with labels not NULL,
 * also the labels of truth.jsonl beside it into *labels (n strings, the array
 * and strings owned by the caller). */
int sae_synth_load_truth(const char *path, float **dirs, size_t *n, size_t *d, char ***labels,
                         sae_error *err);

/* Matches decoder rows w_dec (d_sae, d_in) against truth directions (n_truth,
 * d_in) by cosine: best (d_sae) gets each latent's best truth index and
 * best_cos (d_sae) its cosine; truth_cos (n_truth) gets each truth
 * direction's best cosine with any latent; *mmcs their mean. Any output may be
 * NULL. A zero row has cosine 0 with everything. */
int sae_synth_match(const float *w_dec, size_t d_sae, const float *truth, size_t n_truth,
                    size_t d_in, uint32_t *best, float *best_cos, float *truth_cos,
                    double *mmcs, sae_error *err);

/* Below this cosine between a latent's decoder row and its closest planted
 * direction the latent is "unmatched" rather than given that direction's
 * label: chance cosines of a decoder row with its closest of 68 planted
 * directions in 256 dims stay under 0.45 on the demo, and recovered features
 * score above 0.9 (docs/TRAINING.md, "Labelling latents"). */
#define SAE_SYNTH_MATCH_COS 0.5

/* Counts, for every latent of the SAE m, the rows of the activation files
 * paths[0..n_paths) on which it fires (a nonzero value when the rows are
 * encoded as saed and sae index encode them) into fires (m->d_sae). Refuses
 * files of another width and rows with a non-finite value. */
int sae_synth_fire_counts(const sae_model *m, const char *const *paths, size_t n_paths,
                          uint64_t *fires, sae_error *err);

/* What sae_synth_explain found. */
typedef struct sae_synth_score {
    double mmcs;          /* mean over planted features of their best cosine */
    size_t n_planted;     /* planted features */
    size_t recovered;     /* planted features with a latent at cosine >= 0.9 */
    size_t d_sae;
    size_t n_labelled;    /* latents given their closest planted feature's label */
    size_t n_unmatched;   /* latents firing, but under SAE_SYNTH_MATCH_COS */
    size_t n_dead;        /* latents that never fire on the activations */
} sae_synth_score;

/* Scores the SAE m against the truth (directions (n_truth, m->d_in) and
 * their labels) and writes explanations.jsonl at path, one line per latent:
 * {"index", "description", "score" (the best cosine, 4 decimals), "source"}.
 * The description is "dead" for a latent that never fires on the activation
 * files (sae_synth_fire_counts), "unmatched (cos 0.41)" for one whose best
 * cosine is under SAE_SYNTH_MATCH_COS, and otherwise the label of its
 * closest planted direction. score (may be NULL) gets the MMCS and counts. */
int sae_synth_explain(const sae_model *m, const char *const *paths, size_t n_paths,
                      const float *truth, const char *const *labels, size_t n_truth,
                      const char *path, sae_synth_score *score, sae_error *err);

#endif
