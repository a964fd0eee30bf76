/* outfile.h: writing a file so that readers see the old one or the whole new
 * one, never a part.
 *
 * Everything saed's tools write (weights, cfg.json, activations, tokens,
 * explanations, encodings) goes through here: a temporary file beside the
 * target (same folder, so the rename is atomic; a unique name, so two writers
 * of one target do not share it; mode 0666 less the umask, as open(2) would
 * make it), written through a stdio stream, then
 * flushed, fsynced, renamed over the target and the folder fsynced, so the
 * new file survives a crash once commit returns. A write that fails or is
 * abandoned removes the temporary and leaves the target as it was. */
#ifndef SAE_OUTFILE_H
#define SAE_OUTFILE_H

#include <stdio.h>

#include "io/error.h"

typedef struct sae_outfile {
    FILE *fp;   /* write here; stream errors are collected and reported by commit */
    char *path; /* owned copy of the target */
    char *tmp;  /* owned: the temporary file's name */
} sae_outfile;

/* Creates the temporary file for path (0666 less the umask, 1 MiB stdio buffer). On
 * failure o is left empty and err names path. */
int sae_outfile_open(sae_outfile *o, const char *path, sae_error *err);

/* Finishes the file: flush, fsync, close, rename over the target, fsync the
 * folder. Any write error seen on the stream makes it fail; on failure the
 * temporary is removed and err names the file. Always releases o. */
int sae_outfile_commit(sae_outfile *o, sae_error *err);

/* Drops the file being written: closes and removes the temporary. The target
 * is untouched. Safe on an empty or already released o. */
void sae_outfile_abort(sae_outfile *o);

#endif
