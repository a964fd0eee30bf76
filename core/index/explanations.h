/* explanations.h: feature explanations, as `sae index` reads them from a
 * JSON Lines file (CONTRACT section 3) and as the store gives them back: one
 * type for both.
 *
 * A line: {"index": 12, "description": "...", "score": 0.8, "source": "..."}.
 * Neuronpedia export lines are read as they are: `index` may be a decimal
 * string, `scoreV1` stands for a missing `score`, `explanationModelName` for
 * a missing `source`, and `typeName` is kept. Other keys are ignored. Blank
 * lines are skipped; lines are capped at SAE_JSONL_MAX_LINE (jsonl.h). */
#ifndef SAE_EXPLANATIONS_H
#define SAE_EXPLANATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/* One explanation. Neuronpedia's typeName / scoreV1 are type_name / score. */
typedef struct sae_explanation {
    uint64_t id;            /* 1-based, in file order: the index's explanation id */
    uint32_t feature;
    char *description;      /* owned */
    bool has_score;
    double score;
    char *source;           /* owned; NULL when absent */
    char *type_name;        /* owned; NULL when absent */
} sae_explanation;

/* Explanations in file (id) order. */
typedef struct sae_explanations {
    size_t n;
    sae_explanation *items; /* (n) owned */
    char digest[33];        /* XXH3-128 of the file read ("" when not read from a file) */
} sae_explanations;

/* Reads path; every index must be < d_sae. Errors name the file and line. */
int sae_explanations_read(const char *path, size_t d_sae, sae_explanations *out,
                          sae_error *err);
void sae_explanations_free(sae_explanations *e);

#endif
