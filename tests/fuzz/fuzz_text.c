/* fuzz_text.c: the text files of `sae harvest` (core/lm/textin.c) and the
 * packing of their documents into windows (core/lm/window.c).
 *
 * The input is written as a JSON Lines file and as a plain one, and each is
 * read to the end. Plain: no document holds a newline, and the documents,
 * one a line, are the input less its newlines and the CR before one. JSON
 * Lines: the reader ends, with documents or an error. The plain documents'
 * bytes (ids 0..255) are then packed with the BOS as id 256, under a context,
 * separator and mode taken from the first bytes: every window is full, starts
 * with the BOS when asked, and in packing mode the windows less their
 * BOS/separator ids are the documents' bytes in order, less a tail shorter
 * than a window. */
#include <string.h>

#include "fuzz_common.h"
#include "lm/textin.h"
#include "lm/window.h"

#define FUZZ_BOS 256

/* Every document of path, joined by '\n' into out (cap bytes); *n_out its
 * length. Returns the reader's last status (0 at the end, -1 on an error). */
static int read_all(const char *path, uint8_t *out, size_t cap, size_t *n_out, size_t *docs)
{
    sae_text_reader *r;
    sae_error err = {0};
    int rc = sae_text_open(path, &r, &err);
    FUZZ_ASSERT(rc == 0, "cannot open %s: %s", path, err.msg);
    const char *t;
    size_t n, at = 0;
    *docs = 0;
    while ((rc = sae_text_next(r, &t, &n, &err)) == 1) {
        FUZZ_ASSERT(at + n + 1 <= cap, "documents longer than the input (%zu)", at + n);
        memcpy(out + at, t, n);
        at += n;
        out[at++] = '\n';
        ++*docs;
    }
    FUZZ_ASSERT(rc == 0 || (rc == -1 && err.msg[0]), "status %d, message '%s'", rc, err.msg);
    sae_text_close(r);
    *n_out = at;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *docs = malloc(size + 2);
    size_t n, nd;
    read_all(fuzz_write("in.jsonl", data, size), docs, size + 2, &n, &nd);
    int rc = read_all(fuzz_write("in.txt", data, size), docs, size + 2, &n, &nd);
    FUZZ_ASSERT(rc == 0, "a plain file must read");
    /* The input less "\n" and a CR before one, lines ended by '\n'. */
    size_t k = 0, lines = 0;
    for (size_t i = 0; i < size; i++) {
        bool eol = data[i] == '\n';
        if (data[i] == '\r' && (i + 1 == size || data[i + 1] == '\n'))
            continue;
        FUZZ_ASSERT(k < n && docs[k] == data[i], "plain byte %zu differs", i);
        k++;
        lines += eol;
    }
    if (size && data[size - 1] != '\n')
        k++, lines++;
    FUZZ_ASSERT(k == n && lines == nd, "%zu bytes in %zu lines, read %zu in %zu", k, lines, n, nd);

    /* Windows over the plain documents. */
    sae_window_opts o;
    sae_window_opts_default(&o);
    o.context = 2 + (size ? data[0] % 16 : 0);
    o.prepend_bos = size < 2 || data[1] % 2;
    o.bos = FUZZ_BOS;
    o.sep = size > 2 && data[2] % 2 ? FUZZ_BOS : -1;
    o.no_concat = size > 3 && data[3] % 5 == 0;
    sae_windower w;
    sae_error err;
    FUZZ_ASSERT(sae_windower_init(&w, &o, &err) == 0, "%s", err.msg);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    size_t got = 0, start = 0;
    uint8_t *flat = malloc(n + 1);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && docs[i] != '\n')
            continue;
        size_t len = i - start;
        for (size_t j = 0; j < len; j++)
            ids[j] = docs[start + j];
        sae_windower_doc(&w, ids, len);
        const uint32_t *win;
        uint64_t doc;
        while (sae_windower_next(&w, &win, &doc)) {
            FUZZ_ASSERT(!o.prepend_bos || win[0] == FUZZ_BOS, "window without its BOS");
            FUZZ_ASSERT(doc <= w.doc, "window of document %llu after %llu",
                        (unsigned long long)doc, (unsigned long long)w.doc);
            for (size_t p = 0; p < o.context; p++)
                if (win[p] != FUZZ_BOS) {
                    FUZZ_ASSERT(win[p] < 256, "id %u", win[p]);
                    flat[got++] = (uint8_t)win[p];
                }
        }
        start = i + 1;
    }
    if (!o.no_concat) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (docs[i] == '\n')
                continue;
            FUZZ_ASSERT(total >= got || flat[total] == docs[i], "byte %zu out of order", total);
            total++;
        }
        FUZZ_ASSERT(w.len < o.context, "a full window was kept back");
        FUZZ_ASSERT(got <= total && total - got <= w.len, "%zu of %zu bytes in windows, %zu kept",
                    got, total, w.len);
    }
    sae_windower_free(&w);
    free(flat);
    free(ids);
    free(docs);
    return 0;
}
