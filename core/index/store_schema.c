/* store_schema.c: what every store file shares: the schema version, the
 * meta keys and SQLite's errors as sae_error (store_internal.h). */
#include "index/store_internal.h"

int sae_store_schema_version(void)
{
    return sae_schema_files[sae_schema_count - 1].number;
}

/* The order is the meta table's row order: changing it changes the file. */
const char *const sae_store_meta_keys[SAE_STORE_META_KEYS] = {
    "weights_digest", "d_in", "d_sae", "n_tokens", "n_documents", "corpus_tokens",
    "corpus_documents", "top", "quantiles", "per_quantile", "context", "neighbours", "seed",
    "block_rows", "shard", "histogram", "tokens_digest", "explanations_digest",
    "n_explanations",
};

/* err from the connection's last error, naming the file (store_internal.h). */
int sae_store_fail(sqlite3 *db, const char *path, const char *what, sae_error *err)
{
    int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
    const char *msg = db ? sqlite3_errmsg(db) : "cannot open";
    if (code == SQLITE_FULL)
        return sae_error_set(err, SAE_EIO, "%s: %s: disk full (%s)", path, what, msg);
    if (code == SQLITE_IOERR || code == SQLITE_CANTOPEN)
        return sae_error_set(err, SAE_EIO, "%s: %s: I/O error (%s)", path, what, msg);
    if (code == SQLITE_NOMEM)
        return sae_error_set(err, SAE_ENOMEM, "%s: %s: out of memory", path, what);
    return sae_error_set(err, SAE_EFORMAT, "%s: %s: %s", path, what, msg);
}
