/* explanations.h: feature explanations, as `sae index` reads them (CONTRACT
 * section 3) and as the store gives them back: one type for both.
 *
 * Inputs, told apart by their content (not their names):
 *   - JSON Lines, one explanation object a line, optionally gzip-compressed
 *     (Neuronpedia's published explanation batches are .jsonl.gz);
 *   - a JSON array of explanation objects, optionally gzip-compressed (what
 *     Neuronpedia's API and its explanation export return);
 *   - a delphi run folder (EleutherAI/delphi): explanations/{module}_latent{i}.txt
 *     each holding a JSON string, and where present scores/{scorer}/ files of
 *     the same names (explanations_delphi.c).
 *
 * An explanation object: {"index": 12, "description": "...", "score": 0.8,
 * "source": "...", "scores": [...]}. Neuronpedia's names are read as they are:
 * `index` may be a decimal string, `scoreV1` stands for a missing `score`,
 * `scoreV2` is kept, `explanationModelName` stands for a missing `source`,
 * `typeName` is kept, and each `scores` entry is {"value", "type" or
 * "explanationScoreTypeName", "model" or "explanationScoreModelName"}. A
 * Neuronpedia feature object ({"index", "explanations": [...]}, no
 * "description") stands for its explanations. Other keys are ignored. JSON
 * Lines are read by jsonl.h (blank lines skipped, lines capped). */
#ifndef SAE_EXPLANATIONS_H
#define SAE_EXPLANATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/* A JSON array file (decompressed) may hold at most this many bytes. */
#define SAE_EXPLANATIONS_MAX_ARRAY ((size_t)1 << 30)

/* One score of an explanation (Neuronpedia's ExplanationScore). */
typedef struct sae_explanation_score {
    double value;
    char *type;             /* owned; NULL when absent (explanationScoreTypeName) */
    char *model;            /* owned; NULL when absent (explanationScoreModelName) */
} sae_explanation_score;

/* One explanation. Neuronpedia's scoreV1 / scoreV2 / typeName are score /
 * score_v2 / type_name. */
typedef struct sae_explanation {
    uint64_t id;            /* 1-based, in input order: the index's explanation id */
    uint32_t feature;
    char *description;      /* owned */
    bool has_score;
    double score;           /* scoreV1 */
    bool has_score_v2;
    double score_v2;
    char *source;           /* owned; NULL when absent */
    char *type_name;        /* owned; NULL when absent */
    size_t n_scores;
    sae_explanation_score *scores; /* (n_scores) owned, in input order */
} sae_explanation;

/* Explanations in input (id) order. */
typedef struct sae_explanations {
    size_t n;
    sae_explanation *items; /* (n) owned */
    size_t cap;
    char digest[33];        /* XXH3-128 of the bytes read ("" when not read from files) */
} sae_explanations;

/* Reads the n inputs in order (files or delphi folders); ids run on across
 * them. Every index must be < d_sae. Errors name the file and the line
 * (JSON Lines), the entry (arrays) or the file (delphi). The digest is the
 * input's digest for one input, else the digest of their digests. */
int sae_explanations_read(const char *const *paths, size_t n, size_t d_sae,
                          sae_explanations *out, sae_error *err);
void sae_explanations_free(sae_explanations *e);
/* Orders e best first as Neuronpedia lists a feature's explanations:
 * scoreV2 descending, then scoreV1 (score) descending, an absent score after
 * every present one, ties by id. */
void sae_explanations_sort_best(sae_explanations *e);

/* ---- shared by explanations*.c ---- */

/* Appends a zeroed explanation to e with the next id; *x points at it. */
int sae_explanations_push(sae_explanations *e, const char *path, sae_explanation **x,
                          sae_error *err);
/* Appends a score (type and model copied; either may be NULL) to x. */
int sae_explanation_add_score(sae_explanation *x, double value, const char *type,
                              const char *model, const char *path, sae_error *err);
/* Reads a delphi run folder (or its explanations folder) into e. */
int sae_explanations_read_delphi(const char *dir, size_t d_sae, sae_explanations *e,
                                 char digest[33], sae_error *err);

#endif
