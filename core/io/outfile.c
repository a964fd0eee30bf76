/* outfile.c: the temporary-file-and-rename writer (see outfile.h). */
#include "io/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsyncs the folder holding path so a rename into it survives a crash. */
static void sync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* The process's umask, read without changing it (umask(2) can only be read
 * by setting it, which would race with other threads creating files); 022
 * when /proc does not say. */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    unsigned m = 022;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1)
            break;
    if (f)
        fclose(f);
    return (mode_t)(m & 0777);
}

/* Frees o's names and empties it. */
static void release(sae_outfile *o)
{
    free(o->path);
    free(o->tmp);
    o->fp = NULL;
    o->path = o->tmp = NULL;
}

int sae_outfile_open(sae_outfile *o, const char *path, sae_error *err)
{
    int fd = -1, rc;
    o->fp = NULL;
    o->tmp = NULL;
    if (!(o->path = strdup(path)) || asprintf(&o->tmp, "%s.tmp.XXXXXX", path) < 0) {
        o->tmp = NULL;
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if ((fd = mkostemp(o->tmp, O_CLOEXEC)) < 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot create a temporary file beside it: %s", path,
                           strerror(errno));
        goto fail;
    }
    /* mkostemp makes 0600; give the file the mode open(2) would have. */
    if (fchmod(fd, 0666 & ~current_umask()) || !(o->fp = fdopen(fd, "wb"))) {
        rc = sae_error_set(err, SAE_EIO, "%s: %s", o->tmp, strerror(errno));
        close(fd);
        unlink(o->tmp);
        goto fail;
    }
    setvbuf(o->fp, NULL, _IOFBF, 1 << 20);
    return 0;
fail:
    release(o);
    return rc;
}

int sae_outfile_commit(sae_outfile *o, sae_error *err)
{
    int rc = 0;
    errno = 0;
    bool bad = fflush(o->fp) != 0 || ferror(o->fp) || fsync(fileno(o->fp)) != 0;
    int e = errno;
    if (fclose(o->fp) != 0 && !bad) {
        bad = true;
        e = errno;
    }
    o->fp = NULL;
    if (bad)
        rc = sae_error_set(err, SAE_EIO, "%s: write failed: %s", o->path,
                           e ? strerror(e) : "I/O error");
    else if (rename(o->tmp, o->path) != 0)
        rc = sae_error_set(err, SAE_EIO, "%s: cannot rename into place: %s", o->path,
                           strerror(errno));
    if (rc)
        unlink(o->tmp);
    else
        sync_parent_dir(o->path);
    release(o);
    return rc;
}

void sae_outfile_abort(sae_outfile *o)
{
    if (o->fp) {
        fclose(o->fp);
        unlink(o->tmp);
    }
    release(o);
}
