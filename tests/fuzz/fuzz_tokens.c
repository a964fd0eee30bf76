/* fuzz_tokens.c: the tokens JSON Lines reader of `sae index`
 * (sae_tokens_open, then every document read back with sae_tokens_read_doc,
 * as the indexer reads them).
 *
 * The input is written to a scratch file (the reader takes a path). Row
 * bookkeeping must add up: row_start is non-decreasing from 0 to n_tokens,
 * each document read back has row_start[d+1] - row_start[d] tokens, and
 * sae_tokens_doc_of_row finds the document owning a row. */
#include "fuzz_common.h"
#include "index/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("tokens.jsonl", data, size);
    sae_tokens *t = NULL;
    sae_error err = {0};
    int rc = sae_tokens_open(path, &t, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    FUZZ_ASSERT(t->row_start[0] == 0 && t->row_start[t->n_docs] == t->n_tokens,
                "rows %llu..%llu, n_tokens %llu", (unsigned long long)t->row_start[0],
                (unsigned long long)t->row_start[t->n_docs], (unsigned long long)t->n_tokens);
    for (size_t d = 0; d < t->n_docs; d++) {
        FUZZ_ASSERT(t->row_start[d] <= t->row_start[d + 1], "doc %zu: rows go back", d);
        FUZZ_ASSERT(t->line_off[d] + t->line_len[d] <= size, "doc %zu: line past the end", d);
        sae_doc doc = {0};
        sae_error e2 = {0};
        int r2 = sae_tokens_read_doc(t, d, &doc, &e2);
        FUZZ_ASSERT(r2 == 0, "doc %zu: opened but does not read back: %s", d, e2.msg);
        FUZZ_ASSERT(doc.n == t->row_start[d + 1] - t->row_start[d], "doc %zu: %zu tokens", d,
                    doc.n);
        FUZZ_ASSERT(doc.id != NULL, "doc %zu: no id", d);
        for (size_t i = 0; i < doc.n; i++)
            FUZZ_ASSERT(doc.tok[i] != NULL || doc.tok_len[i] == 0, "doc %zu token %zu", d, i);
        if (doc.n) {
            FUZZ_ASSERT(sae_tokens_doc_of_row(t, t->row_start[d]) == d, "first row of doc %zu", d);
            FUZZ_ASSERT(sae_tokens_doc_of_row(t, t->row_start[d + 1] - 1) == d,
                        "last row of doc %zu", d);
        }
        sae_doc_free(&doc);
    }
    sae_tokens_free(t);
    return 0;
}
