/* parts.h: the canonical tensors of one SAE, as a format loader composed them.
 *
 * Every release format (Gemma Scope's params.npz, Llama Scope's
 * final.safetensors, dictionary_learning's ae.pt, ...) is read by its reader
 * in core/io into a sae_st_file; its loader in core/sae/format_*.c then
 * composes from those tensors the model SAELens would build (W_enc
 * [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec, threshold, ...),
 * including the transposes and folds SAELens' loader applies. An array the
 * loader did not have to change is borrowed from the file (in place when it
 * is an aligned F32 tensor); a transposed, folded or converted one is a
 * buffer the parts own. model.c then binds the parts into a sae_model,
 * taking everything they own. */
#ifndef SAE_PARTS_H
#define SAE_PARTS_H

#include <stdbool.h>
#include <stddef.h>

#include "io/error.h"
#include "io/safetensors.h"
#include "sae/model_cfg.h" /* sae_arch, sae_norm */

/* One composed SAE. Owns weights_path, st, the names and every buffer in
 * `owned`; the weight pointers borrow from st's tensors or from `owned`. */
typedef struct sae_parts {
    char *weights_path;             /* owned: the weights file, for messages and `sae info` */
    sae_st_file *st;                /* owned: that file as its reader opened it */
    char dtype[8];                  /* the file's weight dtype ("F32", "BF16", ...) */

    size_t d_in, d_sae;
    sae_arch arch;
    size_t k;                       /* topk only */
    bool apply_b_dec_to_input;
    sae_norm norm;
    float norm_scaling_factor;      /* 0 means 1 */

    const float *w_enc;             /* (d_in, d_sae), or (d_sae, d_in) if w_enc_t */
    bool w_enc_t;
    const float *b_enc;             /* (d_sae); NULL for gated */
    const float *w_dec;             /* (d_sae, d_in) */
    const float *b_dec;             /* (d_in) */
    const float *threshold;         /* (d_sae) jumprelu */
    const float *b_gate, *b_mag;    /* (d_sae) gated */
    const float *r_mag;             /* (d_sae) gated, raw (not exponentiated) */

    char *model_name, *hook_name, *neuronpedia_id; /* owned; NULL when the format gives none */
    bool transcoder;                /* the output is another hook's (hook_name_out); d_out = d_in */
    char *hook_name_out;            /* owned; NULL unless a transcoder says which hook */

    float **owned;                  /* owned buffers the pointers above may point into */
    size_t n_owned;
} sae_parts;

/* Frees everything p owns and zeroes it. */
void sae_parts_free(sae_parts *p);

/* A new buffer of n floats owned by p; `what` names it in the message. */
int sae_parts_alloc(sae_parts *p, size_t n, const char *what, float **out, sae_error *err);

/* Looks up tensor `name` in p->st and checks its shape: [d0] when ndim is 1,
 * [d0, d1] when 2 (n0, n1 name the sizes in the message). */
int sae_parts_tensor(const sae_parts *p, const char *name, int ndim, size_t d0, size_t d1,
                     const char *n0, const char *n1, const sae_st_tensor **out, sae_error *err);

/* t's values as F32: in place when t is an F32 tensor at an aligned address
 * (np.savez arrays usually are not: their data starts at an odd offset),
 * else converted into a buffer p owns. The result must not be written. */
int sae_parts_f32(sae_parts *p, const sae_st_tensor *t, const float **out, sae_error *err);

/* t's values as F32 in a new buffer p owns, for the loader to fold into. */
int sae_parts_f32_copy(sae_parts *p, const sae_st_tensor *t, float **out, sae_error *err);

/* The transpose of the 2-D tensor t ([r, c] -> [c, r]) as F32 in a buffer p
 * owns: torch's nn.Linear weight [out, in] turned into SAELens' [in, out]. */
int sae_parts_transpose(sae_parts *p, const sae_st_tensor *t, float **out, sae_error *err);

/* Copies the names (each may be NULL) into p. */
int sae_parts_names(sae_parts *p, const char *model_name, const char *hook_name,
                    const char *neuronpedia_id, sae_error *err);

/* Every composed weight array p points at must be finite: a NaN or inf
 * weight makes every encode touching it NaN, which JSON cannot carry. The
 * message names the array (SAELens' name) and the element. */
int sae_parts_check_finite(const sae_parts *p, sae_error *err);

#endif
