/* index_merge.c: the merge of shard files behind `sae merge` (indexer.h).
 * The files form a grid: feature ranges (--features A:B, or every feature)
 * that tile [0, d_sae), each split into document slices (--shard I/N, or
 * 0/1); a feature is merged from the files of its range. Statistics,
 * histograms and exact sums add up; top lists and quantile
 * samples are chosen again from the shards' top entries and sampling
 * candidates with the build's own functions (index_picks.c), so the merged
 * file holds what one build over the whole corpus would. Two passes over the
 * features: the first finds the tokens and documents the merged examples use
 * (the vocabulary is written before any example), the second writes. */
#include "index/index_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/rng.h"

/* One shard being merged: its file, a connection, and per vocab id whether a
 * merged example uses it and its merged vocab id. */
typedef struct shard_in {
    const char *path;
    sae_store *s;
    sae_store_conn *c;
    uint32_t index, n_index; /* I/N */
    uint64_t feat_lo, feat_hi; /* the features it holds */
    uint8_t *used;          /* (vocab size) */
    uint32_t *map;          /* (vocab size) merged vocab id */
} shard_in;

/* The documents merged examples use: global index -> name. */
typedef struct docset {
    uint32_t *doc;          /* (cap) doc + 1, 0 empty */
    char **name;            /* (cap) owned */
    size_t n, cap;
} docset;

/* Frees the set and its names. */
static void docset_free(docset *d)
{
    for (size_t i = 0; i < d->cap; i++)
        free(d->name[i]);
    free(d->doc);
    free(d->name);
    memset(d, 0, sizeof *d);
}

/* Adds document doc with its name unless present; -1 out of memory. */
static int docset_add(docset *d, uint32_t doc, const char *name)
{
    if ((d->n + 1) * 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        docset nd = {calloc(cap, sizeof *nd.doc), calloc(cap, sizeof *nd.name), d->n, cap};
        if (!nd.doc || !nd.name) {
            free(nd.doc);
            free(nd.name);
            return -1;
        }
        for (size_t i = 0; i < d->cap; i++)
            if (d->doc[i]) {
                size_t h = sae_hash64(d->doc[i] - 1) & (cap - 1);
                while (nd.doc[h])
                    h = (h + 1) & (cap - 1);
                nd.doc[h] = d->doc[i];
                nd.name[h] = d->name[i];
            }
        free(d->doc);
        free(d->name);
        *d = nd;
    }
    size_t h = sae_hash64(doc) & (d->cap - 1);
    while (d->doc[h]) {
        if (d->doc[h] == doc + 1)
            return 0;
        h = (h + 1) & (d->cap - 1);
    }
    if (!(d->name[h] = strdup(name)))
        return -1;
    d->doc[h] = doc + 1;
    d->n++;
    return 0;
}

/* Ascending uint64_t, for qsort. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Writes the document set in index order. */
static int docset_write(const docset *d, sae_store_writer *w, sae_error *err)
{
    uint64_t *order = malloc((d->n ? d->n : 1) * sizeof *order);
    if (!order)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->doc[i])
            order[n++] = (uint64_t)(d->doc[i] - 1) << 32 | i;
    qsort(order, n, sizeof *order, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = sae_store_put_document(w, (uint32_t)(order[i] >> 32),
                                    d->name[order[i] & 0xffffffffu], err);
    free(order);
    return rc;
}

/* The merge: the shards (in shard order once checked), the documents and
 * tokens the merged examples use, and the scratch of the feature being
 * worked on: every shard's examples of it and the flat list of them that
 * picks refer to. Owns everything but the paths. */
typedef struct merge_ctx {
    shard_in *sh;                  /* (n) */
    size_t n;
    const sae_store_info *info;    /* shard 0's */
    size_t *grp;                   /* (n_grp + 1) sh[grp[g] .. grp[g+1]) is range g's files */
    size_t n_grp;
    uint64_t n_tokens, n_docs;     /* summed over the document slices of a range */
    docset docs;
    interner vocab;
    sae_store_examples *top, *cand; /* (n) */
    const sae_store_example **ex;  /* (cap_ex) */
    uint32_t *ex_shard;            /* (cap_ex) */
    size_t n_ex, cap_ex;
    cand *cands;                   /* (cap_ex) */
    pick *picks;                   /* (N + Q*M) */
    pick *tops;                    /* (cap_tops) every shard's top entries */
    sae_store_example_row *rows;   /* (N + Q*M) */
    size_t cap_tops;
    uint32_t *tokbuf;              /* (N + Q*M, 2C+1) merged vocab ids */
} merge_ctx;

/* Appends example e of shard s to the flat list; returns its index or -1. */
static long ex_push(merge_ctx *mc, const sae_store_example *e, uint32_t s)
{
    if (mc->n_ex == mc->cap_ex) {
        size_t c = mc->cap_ex ? mc->cap_ex * 2 : 256;
        const sae_store_example **a = realloc(mc->ex, c * sizeof *a);
        if (a)
            mc->ex = a;
        uint32_t *b = a ? realloc(mc->ex_shard, c * sizeof *b) : NULL;
        if (b)
            mc->ex_shard = b;
        cand *cc = b ? realloc(mc->cands, c * sizeof *cc) : NULL;
        if (!cc)
            return -1;
        mc->cands = cc;
        mc->cap_ex = c;
    }
    mc->ex[mc->n_ex] = e;
    mc->ex_shard[mc->n_ex] = s;
    return (long)mc->n_ex++;
}

/* Frees the examples read for the current feature. */
static void merge_release(merge_ctx *mc)
{
    for (size_t s = 0; s < mc->n; s++) {
        sae_store_examples_free(&mc->top[s]);
        sae_store_examples_free(&mc->cand[s]);
    }
    mc->n_ex = 0;
}

/* One feature's numbers summed over the shards. */
typedef struct merged_stats {
    uint64_t n_active;
    float max;
    double decoder_norm;           /* shard 0's (every shard has the same weights) */
    sae_exact_sum sum;
    uint64_t hist[SAE_HIST_BINS];
} merged_stats;

/* Sums feature f's statistics over the shards of its range into *ms and
 * reads each one's top examples and sampling candidates of f into mc->top,
 * mc->cand (the other shards' stay empty). */
static int merge_read(merge_ctx *mc, uint32_t f, merged_stats *ms, sae_error *err)
{
    int rc;
    memset(ms, 0, sizeof *ms);
    size_t g = 0;
    while (g + 1 < mc->n_grp && f >= mc->sh[mc->grp[g]].feat_hi)
        g++;
    for (size_t s = mc->grp[g]; s < mc->grp[g + 1]; s++) {
        sae_store_feature_raw raw;
        if ((rc = sae_store_get_feature_raw(mc->sh[s].c, f, &raw, err)))
            return rc;
        ms->n_active += raw.f.n_active;
        if (raw.f.max_activation > ms->max)
            ms->max = (float)raw.f.max_activation;
        if (s == mc->grp[g])
            ms->decoder_norm = raw.f.decoder_norm;
        sae_exact_sum part;
        memcpy(part.limb, raw.sum_exact, sizeof part.limb);
        sae_exact_sum_merge(&ms->sum, &part);
        for (size_t b = 0; b < raw.hist.n; b++)
            ms->hist[raw.hist.first_bin + b] += raw.hist.counts[b];
        sae_store_feature_raw_free(&raw);
        if ((rc = sae_store_get_examples(mc->sh[s].c, f, SAE_EX_TOP, mc->info->top, 0,
                                         &mc->top[s], err)) ||
            (rc = sae_store_get_examples(mc->sh[s].c, f, SAE_EX_CANDIDATE, UINT64_MAX, 0,
                                         &mc->cand[s], err)))
            return rc;
    }
    return 0;
}

/* The best N of the shards' top lists (documents never repeat), ranked, into
 * mc->picks; their count in *nt. */
static int merge_pick_top(merge_ctx *mc, uint32_t f, size_t *nt, sae_error *err)
{
    size_t n = 0;
    for (size_t s = 0; s < mc->n; s++)
        for (size_t i = 0; i < mc->top[s].n; i++) {
            const sae_store_example *e = &mc->top[s].items[i];
            long at = ex_push(mc, e, (uint32_t)s);
            if (at < 0 || n >= mc->cap_tops)
                return sae_error_set(err, SAE_ENOMEM, "%s: feature %u: too many top examples",
                                     mc->sh[s].path, f);
            mc->tops[n++] = (pick){.kind = SAE_EX_TOP, .src = (uint32_t)at, .doc = e->doc_index,
                                   .pos = e->first + e->focus_index, .value = e->focus_value};
        }
    qsort(mc->tops, n, sizeof *mc->tops, sae_ix_cmp_pick_top);
    if (n > mc->info->top)
        n = mc->info->top;
    for (size_t i = 0; i < n; i++) {
        mc->picks[i] = mc->tops[i];
        mc->picks[i].rank = (uint32_t)i;
    }
    *nt = n;
    return 0;
}

/* The quantile samples from the union of the shards' candidates, ranked,
 * into mc->picks after the nt top picks; their count in *nq. */
static int merge_pick_quantile(merge_ctx *mc, uint32_t f, const merged_stats *ms, size_t nt,
                               size_t *nq, sae_error *err)
{
    size_t nc = 0;
    for (size_t s = 0; s < mc->n; s++)
        for (size_t i = 0; i < mc->cand[s].n; i++) {
            const sae_store_example *e = &mc->cand[s].items[i];
            long at = ex_push(mc, e, (uint32_t)s);
            if (at < 0)
                return sae_error_set(err, SAE_ENOMEM, "out of memory");
            if (e->grp < -1 || e->grp >= SAE_HIST_BINS)
                return sae_error_set(err, SAE_EFORMAT,
                                     "%s: feature %u: candidate bin %d out of range",
                                     mc->sh[s].path, f, e->grp);
            cand *c = &mc->cands[nc++];
            c->hash = e->hash;
            c->doc = e->doc_index;
            c->pos = e->first + e->focus_index;
            c->value = e->focus_value;
            c->bin = e->grp;
            c->src = (uint32_t)at;
        }
    *nq = sae_ix_quantile_picks(mc->info->quantiles, mc->info->per_quantile, ms->max, ms->hist,
                                ms->n_active, mc->cands, nc, mc->picks + nt);
    return 0;
}

/* Pass 1: marks the vocab ids and documents the np picks use. */
static int merge_mark(merge_ctx *mc, size_t np, sae_error *err)
{
    for (size_t i = 0; i < np; i++) {
        const sae_store_example *e = mc->ex[mc->picks[i].src];
        shard_in *sh = &mc->sh[mc->ex_shard[mc->picks[i].src]];
        for (size_t j = 0; j < e->n; j++)
            sh->used[e->token_ids[j]] = 1;
        if (docset_add(&mc->docs, e->doc_index, e->document))
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    return 0;
}

/* Pass 2: writes feature f's row and its nt + nq picked examples, their
 * tokens renumbered into the merged vocabulary. */
static int merge_put(merge_ctx *mc, uint32_t f, const merged_stats *ms, size_t nt, size_t nq,
                     sae_store_writer *w, sae_error *err)
{
    size_t np = nt + nq, win = 2 * (size_t)mc->info->context + 1;
    sae_store_feature_row row;
    sae_ix_feature_row(f, ms->n_active, ms->max, &ms->sum, ms->decoder_norm, mc->n_tokens,
                       ms->hist, (uint32_t)nt, (uint32_t)nq, &row);
    int rc = sae_store_put_feature(w, &row, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < np; i++) {
        const pick *p = &mc->picks[i];
        const sae_store_example *e = mc->ex[p->src];
        const shard_in *sh = &mc->sh[mc->ex_shard[p->src]];
        if (e->n > win)
            return sae_error_set(err, SAE_EFORMAT, "%s: feature %u: example window too long",
                                 sh->path, f);
        uint32_t *toks = mc->tokbuf + i * win;
        for (size_t j = 0; j < e->n; j++)
            toks[j] = sh->map[e->token_ids[j]];
        mc->rows[i] = (sae_store_example_row){
            .doc = e->doc_index, .first = e->first, .focus = e->first + e->focus_index,
            .len = (uint32_t)e->n, .value = e->focus_value,
            .hash = p->kind == SAE_EX_TOP ? 0 : p->hash, .grp = p->grp, .has_bin = p->has_bin,
            .bin_min = p->bin_min, .bin_max = p->bin_max, .bin_contains = p->bin_contains,
            .tokens = toks, .acts = e->values,
        };
    }
    return sae_ix_put_examples(w, f, mc->picks, mc->rows, np, err);
}

/* Merges feature f of every shard. With w NULL (pass 1) it only marks the
 * vocab ids and documents the merged examples use; otherwise (pass 2) it
 * writes the feature and its examples to w. */
static int merge_feature(merge_ctx *mc, uint32_t f, sae_store_writer *w, sae_error *err)
{
    merged_stats ms;
    size_t nt = 0, nq = 0;
    int rc = merge_read(mc, f, &ms, err);
    if (!rc)
        rc = merge_pick_top(mc, f, &nt, err);
    if (!rc)
        rc = merge_pick_quantile(mc, f, &ms, nt, &nq, err);
    if (!rc)
        rc = w ? merge_put(mc, f, &ms, nt, nq, w, err) : merge_mark(mc, nt + nq, err);
    merge_release(mc);
    return rc;
}

/* The first build setting in which a and b differ, or NULL. */
static const char *settings_differ(const sae_store_info *a, const sae_store_info *b)
{
    if (strcmp(a->weights_digest, b->weights_digest))
        return "weights_digest";
    if (a->d_in != b->d_in || a->d_sae != b->d_sae)
        return "d_in/d_sae";
    if (a->corpus_tokens != b->corpus_tokens || a->corpus_documents != b->corpus_documents ||
        strcmp(a->tokens_digest, b->tokens_digest))
        return "tokens file";
    if (a->top != b->top)
        return "top";
    if (a->quantiles != b->quantiles)
        return "quantiles";
    if (a->per_quantile != b->per_quantile)
        return "per_quantile";
    if (a->context != b->context)
        return "context";
    if (a->neighbours != b->neighbours)
        return "neighbours";
    if (a->seed != b->seed)
        return "seed";
    if (a->block_rows != b->block_rows)
        return "block_rows";
    if (strcmp(a->histogram, b->histogram))
        return "histogram";
    if (strcmp(a->explanations_digest, b->explanations_digest) ||
        a->n_explanations != b->n_explanations)
        return "explanations";
    return NULL;
}

/* Parses "I/N" strictly (a feature range after it is the store's, checked
 * when opened); false unless 0 <= I < N. */
static bool parse_shard(const char *s, uint32_t *i, uint32_t *n)
{
    unsigned a, b;
    int used = 0;
    if (sscanf(s, "%u/%u%n", &a, &b, &used) != 2 || (s[used] && s[used] != ' ') || b == 0 ||
        a >= b || *s < '0' || *s > '9')
        return false;
    *i = a;
    *n = b;
    return true;
}

/* Opens shard file i and checks it: a shard, settings in range, built like
 * shard file 0. */
static int merge_open_shard(merge_ctx *mc, const char *const *paths, size_t i, sae_error *err)
{
    shard_in *sh = mc->sh;
    int rc;
    sh[i].path = paths[i];
    if ((rc = sae_store_open(paths[i], &sh[i].s, err)))
        return rc;
    const sae_store_info *in = sae_store_get_info(sh[i].s);
    uint32_t si, sn;
    if (!parse_shard(in->shard, &si, &sn))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: not a shard (built without --shard); merge takes the shard "
                             "files of one corpus",
                             paths[i]);
    sae_index_settings chk = {.top = in->top, .quantiles = in->quantiles,
                              .per_quantile = in->per_quantile, .context = in->context,
                              .neighbours = in->neighbours, .shard = si, .n_shards = sn,
                              .block_rows = in->block_rows};
    sae_error why;
    if (sae_index_settings_check(&chk, &why))
        return sae_error_set(err, SAE_EFORMAT, "%s: build settings out of range (%s)", paths[i],
                             why.msg);
    const char *what = i ? settings_differ(sae_store_get_info(sh[0].s), in) : NULL;
    if (what)
        return sae_error_set(err, SAE_EINVAL, "%s: built with other %s than %s", paths[i], what,
                             paths[0]);
    sh[i].index = si;
    sh[i].n_index = sn;
    sh[i].feat_lo = in->feat_lo;
    sh[i].feat_hi = in->feat_hi;
    return 0;
}

/* Grid order: by feature range, then document slice. */
static bool shard_before(const shard_in *a, const shard_in *b)
{
    if (a->feat_lo != b->feat_lo)
        return a->feat_lo < b->feat_lo;
    if (a->feat_hi != b->feat_hi)
        return a->feat_hi < b->feat_hi;
    return a->index < b->index;
}

/* " features A:B" of shard s, or "" when it holds every feature (buf:
 * 64 bytes). */
static const char *range_name(const merge_ctx *mc, const shard_in *s, char *buf)
{
    if (s->feat_lo == 0 && s->feat_hi == mc->info->d_sae)
        return "";
    snprintf(buf, 64, " of features %" PRIu64 ":%" PRIu64, s->feat_lo, s->feat_hi);
    return buf;
}

/* Checks one range's files sh[b..e) (sorted): one document split, each
 * slice once, none missing. */
static int merge_check_group(merge_ctx *mc, size_t b, size_t e, sae_error *err)
{
    shard_in *sh = mc->sh;
    char rn[64];
    for (size_t i = b + 1; i < e; i++) {
        if (sh[i].n_index != sh[b].n_index)
            return sae_error_set(err, SAE_EINVAL, "%s: shard %u/%u%s, %s is of a %u-way split",
                                 sh[i].path, sh[i].index, sh[i].n_index,
                                 range_name(mc, &sh[i], rn), sh[b].path, sh[b].n_index);
        if (sh[i].index == sh[i - 1].index)
            return sae_error_set(err, SAE_EINVAL, "%s: shard %u/%u%s given twice (also %s)",
                                 sh[i].path, sh[i].index, sh[i].n_index,
                                 range_name(mc, &sh[i], rn), sh[i - 1].path);
    }
    for (uint32_t s = 0, i = (uint32_t)b; s < sh[b].n_index; s++, i++)
        if (i >= e || sh[i].index != s)
            return sae_error_set(err, SAE_EINVAL, "merge: shard %u/%u%s is missing", s,
                                 sh[b].n_index, range_name(mc, &sh[b], rn));
    return 0;
}

/* Sorts the files into the grid and checks it: the ranges tile [0, d_sae)
 * (an overlap or a gap is refused naming the files on either side), and
 * each range's document slices are complete. */
static int merge_grid(merge_ctx *mc, sae_error *err)
{
    shard_in *sh = mc->sh;
    for (size_t i = 1; i < mc->n; i++)
        for (size_t j = i; j > 0 && shard_before(&sh[j], &sh[j - 1]); j--) {
            shard_in t = sh[j];
            sh[j] = sh[j - 1];
            sh[j - 1] = t;
        }
    mc->info = sae_store_get_info(sh[0].s);
    if (!(mc->grp = calloc(mc->n + 1, sizeof *mc->grp)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    uint64_t d = mc->info->d_sae;
    if (sh[0].feat_lo != 0)
        return sae_error_set(err, SAE_EINVAL,
                             "merge: features 0:%" PRIu64 " are in no file (%s starts at %" PRIu64
                             ")", sh[0].feat_lo, sh[0].path, sh[0].feat_lo);
    int rc;
    size_t b = 0;
    for (size_t i = 1; i <= mc->n; i++) {
        if (i < mc->n && sh[i].feat_lo == sh[b].feat_lo && sh[i].feat_hi == sh[b].feat_hi)
            continue;
        if ((rc = merge_check_group(mc, b, i, err)))
            return rc;
        mc->grp[mc->n_grp++] = b;
        if (i == mc->n)
            break;
        if (sh[i].feat_lo < sh[b].feat_hi)
            return sae_error_set(err, SAE_EINVAL,
                                 "merge: %s (features %" PRIu64 ":%" PRIu64 ") overlaps %s "
                                 "(features %" PRIu64 ":%" PRIu64 ")",
                                 sh[i].path, sh[i].feat_lo, sh[i].feat_hi, sh[b].path,
                                 sh[b].feat_lo, sh[b].feat_hi);
        if (sh[i].feat_lo > sh[b].feat_hi)
            return sae_error_set(err, SAE_EINVAL,
                                 "merge: features %" PRIu64 ":%" PRIu64 " are in no file "
                                 "(between %s and %s)",
                                 sh[b].feat_hi, sh[i].feat_lo, sh[b].path, sh[i].path);
        b = i;
    }
    mc->grp[mc->n_grp] = mc->n;
    if (sh[b].feat_hi != d)
        return sae_error_set(err, SAE_EINVAL,
                             "merge: features %" PRIu64 ":%" PRIu64 " are in no file (%s ends "
                             "at %" PRIu64 ")", sh[b].feat_hi, d, sh[b].path, sh[b].feat_hi);
    return 0;
}

/* Opens and checks the n shard files; refuses an incomplete or
 * overlapping set. */
static int merge_open(merge_ctx *mc, const char *const *paths, size_t n, sae_error *err)
{
    if (!(mc->sh = calloc(n ? n : 1, sizeof *mc->sh)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    mc->n = n;
    if (n == 0)
        return sae_error_set(err, SAE_EINVAL, "merge: no shard files given");
    int rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = merge_open_shard(mc, paths, i, err)))
            return rc;
    return merge_grid(mc, err);
}

/* Connects to each shard (in grid order, so the first range's shard 0
 * gives the neighbours and explanations), sizes its vocabulary marks and
 * checks that each range's slices together hold the whole corpus. */
static int merge_connect(merge_ctx *mc, sae_error *err)
{
    shard_in *sh = mc->sh;
    int rc;
    for (size_t g = 0; g < mc->n_grp; g++) {
        uint64_t nt = 0, nd = 0;
        for (size_t i = mc->grp[g]; i < mc->grp[g + 1]; i++) {
            nt += sae_store_get_info(sh[i].s)->n_tokens;
            nd += sae_store_get_info(sh[i].s)->n_documents;
        }
        if (nt != mc->info->corpus_tokens || nd != mc->info->corpus_documents)
            return sae_error_set(err, SAE_EINVAL,
                                 "merge: the shards hold %" PRIu64 " tokens in %" PRIu64
                                 " documents, the corpus %" PRIu64 " in %" PRIu64,
                                 nt, nd, mc->info->corpus_tokens, mc->info->corpus_documents);
        mc->n_tokens = nt;
        mc->n_docs = nd;
    }
    for (size_t i = 0; i < mc->n; i++) {
        size_t nv = sae_store_vocab_size(sh[i].s);
        sh[i].used = calloc(nv ? nv : 1, 1);
        sh[i].map = calloc(nv ? nv : 1, sizeof *sh[i].map);
        if (!sh[i].used || !sh[i].map)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        sae_store_read_once(sh[i].s); /* RSS bounded by the caches, not the files */
        if ((rc = sae_store_connect(sh[i].s, &sh[i].c, err)))
            return rc;
    }
    return 0;
}

/* The per-feature scratch, sized by the settings. */
static int merge_alloc(merge_ctx *mc, sae_error *err)
{
    const sae_store_info *in = mc->info;
    size_t max_picks = (size_t)in->top + (size_t)in->quantiles * in->per_quantile + 1;
    mc->top = calloc(mc->n, sizeof *mc->top);
    mc->cand = calloc(mc->n, sizeof *mc->cand);
    mc->picks = malloc(max_picks * sizeof *mc->picks);
    mc->rows = malloc(max_picks * sizeof *mc->rows);
    mc->tokbuf = malloc(max_picks * (2 * (size_t)in->context + 1) * sizeof *mc->tokbuf);
    mc->cap_tops = mc->n * (size_t)in->top;
    mc->tops = malloc((mc->cap_tops + 1) * sizeof *mc->tops);
    if (!mc->top || !mc->cand || !mc->picks || !mc->tokbuf || !mc->tops || !mc->rows)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    return 0;
}

/* Pass 1, then the tokens and documents it found: the merged vocabulary
 * (every shard's used tokens, interned in shard order) and the documents
 * are written, and each shard's map gets its tokens' merged vocab ids. */
static int merge_vocab(merge_ctx *mc, sae_store_writer *w, sae_error *err)
{
    shard_in *sh = mc->sh;
    uint32_t *remap = NULL;
    int rc;
    for (uint64_t f = 0; f < mc->info->d_sae; f++)
        if ((rc = merge_feature(mc, (uint32_t)f, NULL, err)))
            return rc;
    for (size_t i = 0; i < mc->n; i++)
        for (size_t v = 0; v < sae_store_vocab_size(sh[i].s); v++)
            if (sh[i].used[v]) {
                size_t len;
                const char *t = sae_store_token(sh[i].s, (uint32_t)v, &len);
                if (sae_ix_intern(&mc->vocab, t, len, &sh[i].map[v]))
                    return sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary");
            }
    if ((rc = sae_ix_write_vocab(&mc->vocab, w, &remap, err)) ||
        (rc = docset_write(&mc->docs, w, err)))
        goto out;
    for (size_t i = 0; i < mc->n; i++)
        for (size_t v = 0; v < sae_store_vocab_size(sh[i].s); v++)
            if (sh[i].used[v])
                sh[i].map[v] = remap[sh[i].map[v]];
out:
    free(remap);
    return rc;
}

/* Pass 2: every feature with its examples. */
static int merge_features(merge_ctx *mc, sae_store_writer *w, sae_error *err)
{
    int rc = 0;
    for (uint64_t f = 0; f < mc->info->d_sae && !rc; f++)
        rc = merge_feature(mc, (uint32_t)f, w, err);
    return rc;
}

/* Copies shard 0's neighbours (they depend only on the weights; of range
 * shards, those of the range from 0 hold every feature's) and the meta keys
 * an approximate build reports them with, as an unsharded build writes. */
static int merge_neighbours(merge_ctx *mc, sae_store_writer *w, sae_error *err)
{
    sae_store_neighbours nb = {0};
    int rc = 0;
    for (uint64_t f = 0; f < mc->info->d_sae && !rc; f++) {
        if ((rc = sae_store_get_neighbours(mc->sh[0].c, f, &nb, err)))
            break;
        uint32_t *ni = malloc((nb.n ? nb.n : 1) * sizeof *ni);
        float *nc = malloc((nb.n ? nb.n : 1) * sizeof *nc);
        if (!ni || !nc)
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        for (size_t j = 0; !rc && j < nb.n; j++) {
            ni[j] = nb.items[j].index;
            nc[j] = nb.items[j].cosine;
        }
        if (!rc)
            rc = sae_store_put_neighbours(w, (uint32_t)f, ni, nc, nb.n, err);
        free(ni);
        free(nc);
        sae_store_neighbours_free(&nb);
    }
    return rc ? rc : sae_store_copy_neighbours_meta(mc->sh[0].c, w, err);
}

/* Copies shard 0's explanations (every shard has the same) and writes the
 * meta table: shard 0's, as a whole corpus of the summed size. */
static int merge_meta(merge_ctx *mc, sae_store_writer *w, sae_error *err)
{
    sae_explanations ex = {0};
    int rc = sae_store_get_all_explanations(mc->sh[0].c, &ex, err);
    for (size_t i = 0; !rc && i < ex.n; i++)
        rc = sae_store_put_explanation(w, &ex.items[i], err);
    sae_explanations_free(&ex);
    if (rc)
        return rc;
    sae_store_info info = *mc->info;
    info.shard[0] = '\0';
    info.n_tokens = mc->n_tokens;
    info.n_documents = mc->n_docs;
    return sae_store_put_info(w, &info, err);
}

/* Frees everything the merge holds, closing the shards. */
static void merge_free(merge_ctx *mc)
{
    free(mc->top);
    free(mc->cand);
    free(mc->picks);
    free(mc->tops);
    free(mc->rows);
    free(mc->tokbuf);
    free(mc->ex);
    free(mc->ex_shard);
    free(mc->cands);
    docset_free(&mc->docs);
    sae_ix_interner_free(&mc->vocab);
    for (size_t i = 0; mc->sh && i < mc->n; i++) {
        sae_store_disconnect(mc->sh[i].c);
        sae_store_close(mc->sh[i].s);
        free(mc->sh[i].used);
        free(mc->sh[i].map);
    }
    free(mc->sh);
    free(mc->grp);
}

int sae_merge_shards(const char *const *paths, size_t n, sae_store_writer *w, sae_error *err)
{
    merge_ctx mc = {0};
    int rc = merge_open(&mc, paths, n, err);
    if (!rc)
        rc = merge_connect(&mc, err);
    if (!rc)
        rc = merge_alloc(&mc, err);
    if (!rc)
        rc = merge_vocab(&mc, w, err);
    if (!rc)
        rc = merge_features(&mc, w, err);
    if (!rc)
        rc = merge_neighbours(&mc, w, err);
    if (!rc)
        rc = merge_meta(&mc, w, err);
    merge_free(&mc);
    return rc;
}
