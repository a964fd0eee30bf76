/* explanations_delphi.c: a delphi run folder as explanations (explanations.h).
 *
 * delphi (EleutherAI/delphi, formerly sae-auto-interp) writes, per latent,
 * explanations/{module}_latent{i}.txt holding the explanation as a JSON
 * string, and per scorer scores/{scorer}/{module}_latent{i}.txt holding a
 * JSON array of the examples it scored ({"activating", "prediction",
 * "correct", "probability", ...}; the surprisal_intervention scorer adds
 * "final_score"). Each score file becomes one score of its latent's
 * explanation: type = the scorer's folder name, model absent (delphi does not
 * record it), value = "final_score" when the entries carry one, else the
 * class-balanced accuracy delphi's result_analysis reports ((TPR + TNR) / 2
 * over the entries whose prediction is not null, prediction >= 0.5 counting as
 * positive). A score file whose entries have no prediction at all gives no
 * score. One folder holds one module: several are refused, naming two. */
#include "index/explanations.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "index/jsonl.h"

/* A delphi file is at most this large (score files hold their examples). */
#define DELPHI_MAX_FILE ((size_t)256 << 20)

/* One explanation file: its latent and name. */
typedef struct latent_file {
    uint64_t latent;
    char *name;             /* owned: "{module}_latent{i}.txt" */
} latent_file;

/* Splits name ("{module}_latent{i}.txt") into its module (length *mlen) and
 * latent; false when it is not such a name. */
static bool parse_name(const char *name, size_t *mlen, uint64_t *latent)
{
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".txt"))
        return false;
    const char *tag = NULL;
    for (const char *p = strstr(name, "_latent"); p; p = strstr(p + 1, "_latent"))
        tag = p;
    if (!tag)
        return false;
    const char *d = tag + 7, *end = name + n - 4;
    if (d == end || end - d > 19)
        return false;
    uint64_t x = 0;
    for (; d < end; d++) {
        if (*d < '0' || *d > '9')
            return false;
        x = x * 10 + (uint64_t)(*d - '0');
    }
    *mlen = (size_t)(tag - name);
    *latent = x;
    return true;
}

/* Reads the whole file path (gzip or not) as JSON into *root, hashing its
 * name and digest into h. */
static int load_json(const char *path, const char *name, XXH3_state_t *h, json_t **root,
                     sae_error *err)
{
    sae_jsonl r;
    bool gz;
    char *buf = NULL;
    size_t len;
    json_error_t jerr;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!(rc = sae_jsonl_open_auto(&r, fd, path, &gz, err)) &&
        !(rc = sae_jsonl_rest(&r, DELPHI_MAX_FILE, &buf, &len, err))) {
        char digest[33];
        sae_jsonl_digest(&r, digest);
        XXH3_128bits_update(h, name, strlen(name) + 1);
        XXH3_128bits_update(h, digest, 32);
        *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!*root)
            rc = sae_error_set(err, SAE_EFORMAT, "%s: line %d: not valid JSON: %s", path,
                               jerr.line, jerr.text);
    }
    free(buf);
    sae_jsonl_close(&r);
    close(fd);
    return rc;
}

/* The score a delphi score file's entries give; *has false when none. */
static int score_value(json_t *arr, const char *path, bool *has, double *value, sae_error *err)
{
    size_t k, pos = 0, neg = 0, tp = 0, tn = 0;
    json_t *ex;
    *has = false;
    if (!json_is_array(arr))
        return sae_error_set(err, SAE_EFORMAT, "%s: not a JSON array of scored examples", path);
    json_array_foreach(arr, k, ex) {
        if (!json_is_object(ex))
            return sae_error_set(err, SAE_EFORMAT, "%s: entry %zu: not a JSON object", path, k);
        json_t *fs = json_object_get(ex, "final_score");
        if (json_is_number(fs)) {
            *has = true;
            *value = json_number_value(fs);
            return 0;
        }
        json_t *act = json_object_get(ex, "activating"), *pred = json_object_get(ex, "prediction");
        if (!pred || json_is_null(pred))
            continue;
        if (!json_is_boolean(act) || !(json_is_boolean(pred) || json_is_number(pred)))
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: entry %zu: \"activating\" must be a boolean and "
                                 "\"prediction\" a boolean, number or null",
                                 path, k);
        bool p = json_is_boolean(pred) ? json_is_true(pred) : json_number_value(pred) >= 0.5;
        if (json_is_true(act)) {
            pos++;
            tp += p;
        } else {
            neg++;
            tn += !p;
        }
    }
    if (pos + neg == 0)
        return 0;
    *has = true;
    *value = ((pos ? (double)tp / (double)pos : 0) + (neg ? (double)tn / (double)neg : 0)) / 2;
    return 0;
}

/* Orders latent files by latent. */
static int by_latent(const void *a, const void *b)
{
    const latent_file *x = a, *y = b;
    return (x->latent > y->latent) - (x->latent < y->latent);
}

/* Lists the explanation files of folder expl (one module) into *files. */
static int list_latents(const char *expl, latent_file **files, size_t *n, sae_error *err)
{
    DIR *d = opendir(expl);
    if (!d)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", expl, strerror(errno));
    latent_file *f = NULL;
    size_t cnt = 0, cap = 0;
    char *module = NULL;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t mlen;
        uint64_t latent;
        if (!parse_name(de->d_name, &mlen, &latent))
            continue;
        if (!module) {
            if (!(module = strndup(de->d_name, mlen))) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", expl);
                break;
            }
        } else if (strlen(module) != mlen || strncmp(module, de->d_name, mlen)) {
            rc = sae_error_set(err, SAE_EFORMAT,
                               "%s: explanations of several modules (%s, %.*s): give a folder "
                               "of one SAE's",
                               expl, module, (int)mlen, de->d_name);
            break;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            latent_file *p = realloc(f, cap * sizeof *p);
            if (!p) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", expl);
                break;
            }
            f = p;
        }
        f[cnt].latent = latent;
        if (!(f[cnt].name = strdup(de->d_name))) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", expl);
            break;
        }
        cnt++;
    }
    closedir(d);
    free(module);
    if (!rc && cnt == 0)
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: no delphi explanation files ({module}_latent{i}.txt)", expl);
    if (rc) {
        for (size_t i = 0; i < cnt; i++)
            free(f[i].name);
        free(f);
        return rc;
    }
    qsort(f, cnt, sizeof *f, by_latent);
    *files = f;
    *n = cnt;
    return 0;
}

/* Adds the scores of latent file `name` from every scorer folder of scores
 * (sorted by scorer name) to x. */
static int add_scores(const char *scores, const char *name, sae_explanation *x, XXH3_state_t *h,
                      sae_error *err)
{
    struct dirent **ents;
    int n = scandir(scores, &ents, NULL, alphasort);
    if (n < 0)
        return 0; /* no scores folder: unscored */
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *scorer = ents[i]->d_name;
        char path[4096];
        struct stat st;
        if (!rc && scorer[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s/%s", scores, scorer, name) < (int)sizeof path &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            json_t *root = NULL;
            bool has;
            double v;
            if (!(rc = load_json(path, name, h, &root, err)) &&
                !(rc = score_value(root, path, &has, &v, err)) && has)
                rc = sae_explanation_add_score(x, v, scorer, NULL, path, err);
            json_decref(root);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

int sae_explanations_read_delphi(const char *dir, size_t d_sae, sae_explanations *e,
                                 char digest[33], sae_error *err)
{
    char expl[4096], scores[4096], path[4096];
    struct stat st;
    /* The run folder (explanations/ and scores/ inside) or its explanations/. */
    if (snprintf(expl, sizeof expl, "%s/explanations", dir) >= (int)sizeof expl ||
        snprintf(scores, sizeof scores, "%s/scores", dir) >= (int)sizeof scores)
        return sae_error_set(err, SAE_EINVAL, "%s: path too long", dir);
    if (stat(expl, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(expl, sizeof expl, "%s", dir);
        snprintf(scores, sizeof scores, "%s/../scores", dir);
    }
    latent_file *files = NULL;
    size_t n = 0;
    int rc = list_latents(expl, &files, &n, err);
    if (rc)
        return rc;
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", dir);
    else
        XXH3_128bits_reset(h);
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *root = NULL;
        sae_explanation *x;
        if (snprintf(path, sizeof path, "%s/%s", expl, files[i].name) >= (int)sizeof path)
            rc = sae_error_set(err, SAE_EINVAL, "%s: path too long", expl);
        else if (files[i].latent >= d_sae)
            rc = sae_error_set(err, SAE_ERANGE, "%s: latent %llu out of range (d_sae %zu)", path,
                               (unsigned long long)files[i].latent, d_sae);
        else if (!(rc = load_json(path, files[i].name, h, &root, err))) {
            if (!json_is_string(root))
                rc = sae_error_set(err, SAE_EFORMAT,
                                   "%s: not a JSON string (delphi writes the explanation as one)",
                                   path);
            else if (!(rc = sae_explanations_push(e, path, &x, err))) {
                x->feature = (uint32_t)files[i].latent;
                if (!(x->description = strdup(json_string_value(root))))
                    rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
                else
                    rc = add_scores(scores, files[i].name, x, h, err);
            }
        }
        json_decref(root);
    }
    if (!rc)
        sae_digest_hex(XXH3_128bits_digest(h), digest);
    XXH3_freeState(h);
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
    return rc;
}
