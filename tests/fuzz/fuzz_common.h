/* fuzz_common.h: what the libFuzzer targets share.
 *
 * Each target is one fuzz_<name>.c whose LLVMFuzzerTestOneInput hands the
 * input bytes to the real parser (never a copy of it). Parsers that read from
 * a path get the bytes through a scratch file in a per-process folder under
 * /dev/shm (or $TMPDIR); targets that need a model load small fixture models
 * written once, at start-up, by the project's fixture writer.
 *
 * A harness aborts (a finding) when a parser breaks its own contract: a
 * success with out-of-range output, or a failure without a message. */
#ifndef SAE_FUZZ_COMMON_H
#define SAE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/error.h"
#include "io/safetensors.h"
#include "fixture.h"
#include "index/explanations.h"
#include "sae/model.h"

/* Stops the run with a message: libFuzzer records the input as a crash. */
#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* This process's scratch folder (created on first use, removed at exit). */
const char *fuzz_scratch(void);

/* Writes buf to <scratch>/<name> (replacing it) and returns the path (owned
 * by a static buffer per name slot; valid until the next call with the same
 * name). Aborts if the file cannot be written: that is the harness, not a
 * finding in the parser. */
const char *fuzz_write(const char *name, const void *buf, size_t len);

/* The fuzz models: every one has d_in FUZZ_D_IN and d_sae FUZZ_D_SAE, so one
 * seed body fits them all; they differ in architecture, normalisation and
 * dtype, so the kernels see hostile numbers through every path. */
#define FUZZ_D_IN 8
#define FUZZ_D_SAE 16
#define FUZZ_N_MODELS 5

/* Writes the model folders (once) and returns the folder of model i. */
const char *fuzz_model_dir(size_t i);
/* Loads model i once and returns it (kept for the process's life). */
const sae_model *fuzz_model(size_t i);
/* The fixture options model i was written with. */
void fuzz_model_opts(size_t i, sae_fixture_opts *o);

/* Runs a reader of a whole file into a sae_st_file (npz, torch) on the
 * input and checks its contract: a refusal says why; a success describes
 * the buffer, every tensor's n_elems and nbytes agree with its shape and
 * dtype, its bytes lie in the buffer or in an owned copy (all read, so that
 * ASan sees), every name and metadata key is found again, and float
 * tensors convert. Aborts on a broken invariant. */
void fuzz_st_reader(sae_st_parse_fn parse, const char *name, const uint8_t *data, size_t size);

/* The d_sae the explanation targets read at. */
#define FUZZ_EXPL_D_SAE 1024

/* Runs the explanation reader (sae_explanations_read) on the one file or
 * folder at path, at d_sae FUZZ_EXPL_D_SAE, and checks what every shape it
 * reads promises: a refusal says why; each explanation read names a feature
 * below d_sae and carries a description. Returns 0 with *e filled (the
 * caller checks what its shape adds, then frees it), or the reader's
 * refusal with nothing to free. Aborts on a broken invariant. */
int fuzz_explanations_read(const char *path, sae_explanations *e);

/* A zip archive (every member stored, CRCs right) of the n members
 * names[i] -> data[i][0..sizes[i]), written by libzip into a new buffer
 * (*len bytes, caller frees). Lets a target mutate what is inside an
 * archive without the CRC refusing every mutation. Aborts on failure: that
 * is the harness, not a finding. */
uint8_t *fuzz_zip(size_t n, const char *const *names, const void *const *data,
                  const size_t *sizes, size_t *len);

/* A failed parse must say why. */
#define FUZZ_CHECK_ERR(rc, err)                                                                    \
    FUZZ_ASSERT((rc) == 0 || (err).msg[0] != '\0', "error %d without a message", (rc))

#endif
