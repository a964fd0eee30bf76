/* pickle.h: a restricted unpickler for PyTorch state_dicts.
 *
 * It runs the pickle opcodes a state_dict's data.pkl uses (protocol 2; the
 * whitelist of research-13 section 4.2, the set of torch's own
 * _weights_only_unpickler less NEWOBJ, EMPTY_SET and SHORT_BINSTRING) and
 * knows exactly five kinds of global: collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and the
 * typed storages torch.<Type>Storage. It never imports or calls anything:
 * REDUCE on a known global builds a value here, and every other opcode or
 * global is refused with its name. A storage is a persistent id
 * ('storage', torch.<Type>Storage, key, location, numel); the caller finds
 * its bytes (core/io/torchpt.c). A tensor is checked when it is built: at
 * most SAE_PK_MAX_DIMS dimensions, C-contiguous, inside its storage, every
 * size checked-multiplied.
 *
 * Hostile input is bounded: the stack, the mark stack, the memo indices and
 * the memory all values take have caps, and the input is read with every
 * length checked against what is left. Values are not bounded in nesting
 * and may even contain themselves (a list appended to itself): a reader
 * that walks them must bound its depth. */
#ifndef SAE_PICKLE_H
#define SAE_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/error.h"

#define SAE_PK_MAX_DIMS 8
#define SAE_PK_MAX_STACK 100000
#define SAE_PK_MAX_MARKS 1024
#define SAE_PK_MAX_MEMO (1u << 20)

typedef enum sae_pk_kind {
    SAE_PK_NONE, SAE_PK_BOOL, SAE_PK_INT, SAE_PK_FLOAT, SAE_PK_STR,
    SAE_PK_TUPLE, SAE_PK_LIST, SAE_PK_DICT,
    SAE_PK_GLOBAL,                     /* one of the allowed globals (not callable by itself) */
    SAE_PK_STORAGE,                    /* a persistent id: index into the storage table */
    SAE_PK_TENSOR,
} sae_pk_kind;

/* A tensor as _rebuild_tensor_v2 describes it, already checked against its
 * storage's numel: n_elems elements from element `offset` on, C order. */
typedef struct sae_pk_tensor {
    size_t storage;                    /* index into the storage table */
    uint64_t offset;                   /* in elements */
    int ndim;
    uint64_t shape[SAE_PK_MAX_DIMS];
    size_t n_elems;
} sae_pk_tensor;

/* A value; every pointer is into the sae_pickle's arena. */
typedef struct sae_pk_value sae_pk_value;
struct sae_pk_value {
    sae_pk_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *s; size_t n; } str;            /* NUL-terminated, valid UTF-8 */
        struct { sae_pk_value **items; size_t n, cap; } seq; /* tuple or list */
        struct { sae_pk_value **keys, **vals; size_t n, cap; } dict; /* insertion order */
        int global;
        size_t storage;
        sae_pk_tensor tensor;
    } u;
};

/* A storage as its persistent id declares it. */
typedef struct sae_pk_storage {
    const char *key;                   /* the member data/<key> */
    sae_dtype dtype;
    uint64_t numel;                    /* elements */
} sae_pk_storage;

typedef struct sae_pickle sae_pickle;

/* Runs buf[0..len) (borrowed only during the call). `name` prefixes every
 * message, which names the opcode or global and its byte offset. On success
 * *out owns every value. */
int sae_pickle_load(const char *name, const uint8_t *buf, size_t len, sae_pickle **out,
                    sae_error *err);

/* The value STOP returned. */
const sae_pk_value *sae_pickle_root(const sae_pickle *p);

/* The storages declared, in order of first appearance. */
size_t sae_pickle_storage_count(const sae_pickle *p);
const sae_pk_storage *sae_pickle_storage_at(const sae_pickle *p, size_t i);

/* A short name of a value's kind ("a tensor", "a string", ...) for messages. */
const char *sae_pk_kind_name(sae_pk_kind k);

/* Frees every value. NULL is a no-op. */
void sae_pickle_free(sae_pickle *p);

#endif
