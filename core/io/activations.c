/* activations.c: a corpus of activation rows spread over several files.
 *
 * Each file is a .safetensors file holding a 2-D float tensor "activations"
 * [n_tokens, d_in] (other tensors in it are ignored), or a 2-D .npy; the
 * kind is taken from the extension, and from the magic bytes when the
 * extension is neither. Files are memory-mapped and rows converted to float
 * only when read, so the corpus can be far larger than memory. */
#include "io/activations.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dtype.h"
#include "io/mapped.h"
#include "io/npy.h"
#include "io/safetensors.h"

/* One file of the corpus: where its rows live and how they are stored. */
typedef struct acts_file {
    char *path;                 /* owned */
    sae_st_file *st;            /* owned, safetensors files only */
    void *map;                  /* owned mapping, .npy files only */
    size_t map_len;
    const uint8_t *data;        /* (rows, d_in) elements of dtype, borrowed from the mapping */
    sae_dtype dtype;
    size_t rows;
    size_t row0;                /* index of this file's first row in the corpus */
} acts_file;

/* The corpus: files in the order given. */
struct sae_acts {
    acts_file *files;           /* owned */
    size_t n_files;
    size_t rows, d_in;
};

/* Returns true if s ends with suffix. */
static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Maps path read-only into *map / *len. An empty file is an error. */
static int map_file(const char *path, void **map, size_t *len, sae_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    struct stat st;
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        rc = sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: empty file", path);
    } else {
        *len = (size_t)st.st_size;
        *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*map == MAP_FAILED)
            rc = sae_error_set(err, SAE_EIO, "%s: cannot map: %s", path, strerror(errno));
        else {
            madvise(*map, *len, MADV_SEQUENTIAL);
            sae_mapped_add(*map, *len, path);
        }
    }
    close(fd);
    return rc;
}

/* Returns true if the file starts with the .npy magic. */
static bool looks_like_npy(const char *path)
{
    char magic[6];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool yes = read(fd, magic, sizeof magic) == (ssize_t)sizeof magic &&
               memcmp(magic, "\x93NUMPY", 6) == 0;
    close(fd);
    return yes;
}

/* Opens one file into *f and sets its rows and d_in. */
static int open_one(const char *path, acts_file *f, size_t *d_in, sae_error *err)
{
    bool npy = ends_with(path, ".npy") ||
               (!ends_with(path, ".safetensors") && looks_like_npy(path));
    int rc;
    if (npy) {
        sae_npy_info info;
        if ((rc = map_file(path, &f->map, &f->map_len, err)))
            return rc;
        if ((rc = sae_npy_parse(path, f->map, f->map_len, &info, err)))
            return rc;
        if (info.ndim != 2)
            return sae_error_set(err, SAE_EDIM,
                                 "%s: activations must be 2-D [n_tokens, d_in], got 1-D", path);
        f->data = (const uint8_t *)f->map + info.data_offset;
        f->dtype = info.dtype;
        f->rows = (size_t)info.shape[0];
        *d_in = (size_t)info.shape[1];
        return 0;
    }
    if ((rc = sae_st_open(path, &f->st, err))) {
        /* A file named neither .npy nor .safetensors that fails as safetensors
         * is most likely neither (a raw float dump, say): say that first. */
        if (err && !ends_with(path, ".safetensors")) {
            char why[sizeof err->msg];
            size_t n = strlen(path);
            const char *m = err->msg;
            if (!strncmp(m, path, n) && !strncmp(m + n, ": ", 2))
                m += n + 2; /* the path is said once */
            snprintf(why, sizeof why, "%s", m);
            sae_error_set(err, rc, "%s: not an .npy file nor a readable safetensors file (%s)",
                          path, why);
        }
        return rc;
    }
    const sae_st_tensor *t = sae_st_find(f->st, "activations");
    if (!t)
        return sae_error_set(err, SAE_EFORMAT, "%s: no tensor named \"activations\"", path);
    if (t->ndim != 2)
        return sae_error_set(err, SAE_EDIM,
                             "%s: tensor \"activations\" must be 2-D [n_tokens, d_in], has %d "
                             "dimensions",
                             path, t->ndim);
    if (!sae_dtype_is_float(t->dtype))
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: tensor \"activations\" has dtype %s (F32, F16, BF16 or F64 "
                             "expected)",
                             path, sae_dtype_name(t->dtype));
    f->data = t->data;
    f->dtype = t->dtype;
    f->rows = (size_t)t->shape[0];
    *d_in = (size_t)t->shape[1];
    return 0;
}

/* Opens and validates every file in order, checking each against the first
 * file's d_in; on any failure everything opened so far is released. */
int sae_acts_open(const char *const *paths, size_t n_paths, sae_acts **out, sae_error *err)
{
    sae_acts *a = NULL;
    int rc;
    if (!n_paths) {
        rc = sae_error_set(err, SAE_EINVAL, "no activation files given");
        goto out;
    }
    rc = SAE_ENOMEM;
    if (!(a = calloc(1, sizeof *a)) || !(a->files = calloc(n_paths, sizeof *a->files))) {
        sae_error_set(err, rc, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_paths; i++) {
        acts_file *f = &a->files[i];
        size_t d_in = 0;
        a->n_files = i + 1;
        if (!(f->path = strdup(paths[i]))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = open_one(paths[i], f, &d_in, err)))
            goto out;
        if (d_in == 0) {
            rc = sae_error_set(err, SAE_EDIM, "%s: activations have d_in = 0", paths[i]);
            goto out;
        }
        if (i == 0) {
            a->d_in = d_in;
        } else if (d_in != a->d_in) {
            rc = sae_error_set(err, SAE_EDIM, "%s: d_in = %zu, but %s has d_in = %zu", paths[i],
                               d_in, paths[0], a->d_in);
            goto out;
        }
        f->row0 = a->rows;
        if (sae_add_size(a->rows, f->rows, &a->rows)) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: too many rows in total", paths[i]);
            goto out;
        }
    }
    *out = a;
    a = NULL;
    rc = 0;
out:
    sae_acts_free(a);
    return rc;
}

/* Rows in all files together. */
size_t sae_acts_rows(const sae_acts *a)
{
    return a->rows;
}

/* d_in, shared by every file. */
size_t sae_acts_dim(const sae_acts *a)
{
    return a->d_in;
}

const char *sae_acts_first_path(const sae_acts *a)
{
    return a->files[0].path;
}

/* Finds the file holding row0 by bisection, then converts whole runs of
 * rows file by file until n rows are in dst. */
int sae_acts_read(const sae_acts *a, size_t row0, size_t n, float *dst, sae_error *err)
{
    size_t end;
    if (sae_add_size(row0, n, &end) || end > a->rows)
        return sae_error_set(err, SAE_ERANGE, "activation rows [%zu, %zu+%zu) beyond the %zu rows",
                             row0, row0, n, a->rows);
    /* Files are in row order; find the first holding row0 by bisection. */
    size_t lo = 0, hi = a->n_files;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (a->files[mid].row0 <= row0)
            lo = mid;
        else
            hi = mid;
    }
    size_t at = row0;
    for (size_t i = lo; i < a->n_files && at < end; i++) {
        const acts_file *f = &a->files[i];
        if (at >= f->row0 + f->rows)
            continue; /* an empty file, or rows before `at` */
        size_t r0 = at - f->row0;
        size_t take = f->rows - r0 < end - at ? f->rows - r0 : end - at;
        size_t es = sae_dtype_size(f->dtype);
        sae_convert_to_f32(f->dtype, f->data + r0 * a->d_in * es, take * a->d_in,
                           dst + (at - row0) * a->d_in);
        at += take;
    }
    return 0;
}

/* For each file overlapping the rows, drops the mapped pages lying wholly
 * inside them (MADV_DONTNEED on a read-only private file mapping: the pages
 * are clean, a later read faults them in from the file again). */
void sae_acts_release(const sae_acts *a, size_t row0, size_t n)
{
    size_t end = row0 + n < row0 || row0 + n > a->rows ? a->rows : row0 + n;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < a->n_files; i++) {
        const acts_file *f = &a->files[i];
        if (f->st && !f->st->mapped)
            continue; /* borrowed buffer, not ours to drop */
        size_t lo = row0 > f->row0 ? row0 - f->row0 : 0;
        size_t hi = end > f->row0 ? end - f->row0 : 0;
        if (hi > f->rows)
            hi = f->rows;
        if (lo >= hi)
            continue;
        size_t es = sae_dtype_size(f->dtype) * a->d_in;
        uintptr_t s = ((uintptr_t)(f->data + lo * es) + page - 1) & ~(page - 1);
        uintptr_t e = (uintptr_t)(f->data + hi * es) & ~(page - 1);
        if (e > s)
            madvise((void *)s, e - s, MADV_DONTNEED);
    }
}

/* Unmaps and frees every file. NULL is a no-op. */
void sae_acts_free(sae_acts *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_files; i++) {
        acts_file *f = &a->files[i];
        sae_st_free(f->st);
        if (f->map && f->map != MAP_FAILED) {
            sae_mapped_remove(f->map);
            munmap(f->map, f->map_len);
        }
        free(f->path);
    }
    free(a->files);
    free(a);
}
