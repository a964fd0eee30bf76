/* pickle.c: the restricted unpickler (pickle.h).
 *
 * A small stack machine over the input bytes. Values live in an arena that
 * is freed in one go, so a refusal at any opcode leaks nothing and no value
 * needs an owner; the arena's total size is capped in proportion to the
 * input, which bounds what TUPLE, SETITEMS and APPENDS can copy. Opcodes are
 * named in messages by their pickletools names. */
#include "io/pickle.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The globals a state_dict may name. The storages come last, in the order
 * of storage_dtypes. */
enum {
    G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_STORAGE0,
};
static const struct {
    const char *name;                  /* after "torch." */
    sae_dtype dtype;
} storage_types[] = {
    {"FloatStorage", SAE_DT_F32}, {"BFloat16Storage", SAE_DT_BF16}, {"HalfStorage", SAE_DT_F16},
    {"DoubleStorage", SAE_DT_F64}, {"LongStorage", SAE_DT_I64}, {"IntStorage", SAE_DT_I32},
    {"ShortStorage", SAE_DT_I16}, {"CharStorage", SAE_DT_I8}, {"ByteStorage", SAE_DT_U8},
    {"BoolStorage", SAE_DT_BOOL},
};
#define N_STORAGE_TYPES (sizeof storage_types / sizeof storage_types[0])

/* The pickletools name of every opcode of protocols 0-5, for messages. */
static const char *opcode_name(uint8_t op)
{
    static const struct {
        uint8_t op;
        const char *name;
    } names[] = {
        {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
        {'F', "FLOAT"}, {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"},
        {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"},
        {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},
        {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
        {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"},
        {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
        {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"},
        {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"},
        {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"},
        {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
        {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
        {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
        {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
        {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
        {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op)
            return names[i].name;
    return "an unknown opcode";
}

/* One arena block; big allocations get a block of their own. */
typedef struct pk_block {
    struct pk_block *next;
    size_t used, cap;
    max_align_t data[];
} pk_block;

/* The machine's state. The memo and the stacks are plain arrays with caps;
 * everything else is in the arena. */
struct sae_pickle {
    const char *name;                  /* borrowed during the load only */
    const uint8_t *start, *p, *end;
    size_t op_at;                      /* offset of the opcode being run */
    pk_block *blocks;
    size_t arena_bytes, arena_cap;
    sae_pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks;
    sae_pk_value **memo;
    size_t memo_cap;
    sae_pk_storage *storages;          /* in the arena, grown by copying */
    size_t n_storages, storages_cap;
    const sae_pk_value *root;
    sae_error *err;
};

/* Sets the error with the input name and the opcode's offset; returns the code. */
__attribute__((format(printf, 3, 4))) static int pk_fail(sae_pickle *p, int code,
                                                          const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sae_error_set(p->err, code, "%s: pickle byte %zu: %s", p->name, p->op_at, msg);
}

/* n zeroed bytes from the arena, or NULL (with the error set) past the cap. */
static void *pk_alloc(sae_pickle *p, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n > p->arena_cap - p->arena_bytes) {
        pk_fail(p, SAE_ENOMEM, "the values take more than %zu bytes (the limit for a pickle of "
                "%zu bytes)",
                p->arena_cap, (size_t)(p->end - p->start));
        return NULL;
    }
    pk_block *b = p->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = calloc(1, sizeof *b + cap);
        if (!b) {
            pk_fail(p, SAE_ENOMEM, "out of memory");
            return NULL;
        }
        b->cap = cap;
        b->next = p->blocks;
        p->blocks = b;
    }
    void *r = (char *)b->data + b->used;
    b->used += n;
    p->arena_bytes += n;
    return r;
}

/* A new value of kind k, or NULL. */
static sae_pk_value *pk_new(sae_pickle *p, sae_pk_kind k)
{
    sae_pk_value *v = pk_alloc(p, sizeof *v);
    if (v)
        v->kind = k;
    return v;
}

/* Grows an arena array of pointers to hold one more (doubling; the old copy
 * stays in the arena until the end, which the cap accounts for). */
static int pk_grow(sae_pickle *p, sae_pk_value ***items, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    sae_pk_value **a = pk_alloc(p, ncap * sizeof *a);
    if (!a)
        return -1;
    if (n)
        memcpy(a, *items, n * sizeof *a);
    *items = a;
    *cap = ncap;
    return 0;
}

const char *sae_pk_kind_name(sae_pk_kind k)
{
    switch (k) {
    case SAE_PK_NONE: return "None";
    case SAE_PK_BOOL: return "a bool";
    case SAE_PK_INT: return "an int";
    case SAE_PK_FLOAT: return "a float";
    case SAE_PK_STR: return "a string";
    case SAE_PK_TUPLE: return "a tuple";
    case SAE_PK_LIST: return "a list";
    case SAE_PK_DICT: return "a dict";
    case SAE_PK_GLOBAL: return "a global";
    case SAE_PK_STORAGE: return "a storage";
    case SAE_PK_TENSOR: return "a tensor";
    }
    return "a value";
}

/* ---------------------------------------------------------------- input */

/* Takes n bytes of the input, or fails naming what was being read. */
static const uint8_t *take(sae_pickle *p, size_t n, const char *what)
{
    if ((size_t)(p->end - p->p) < n) {
        pk_fail(p, SAE_EFORMAT, "truncated: %s needs %zu bytes, %zu left", what, n,
                (size_t)(p->end - p->p));
        return NULL;
    }
    const uint8_t *r = p->p;
    p->p += n;
    return r;
}

/* Little-endian unsigned integer of n <= 8 bytes. */
static uint64_t le_uint(const uint8_t *b, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | b[i];
    return v;
}

/* ---------------------------------------------------------------- stack */

/* Pushes v (NULL: an allocation already failed). */
static int push(sae_pickle *p, sae_pk_value *v)
{
    if (!v)
        return p->err->code ? p->err->code : SAE_ENOMEM;
    if (p->sp == p->stack_cap) {
        if (p->stack_cap == SAE_PK_MAX_STACK)
            return pk_fail(p, SAE_EFORMAT, "the stack is deeper than %d values",
                           SAE_PK_MAX_STACK);
        size_t ncap = p->stack_cap ? p->stack_cap * 2 : 64;
        if (ncap > SAE_PK_MAX_STACK)
            ncap = SAE_PK_MAX_STACK;
        sae_pk_value **s = realloc(p->stack, ncap * sizeof *s);
        if (!s)
            return pk_fail(p, SAE_ENOMEM, "out of memory");
        p->stack = s;
        p->stack_cap = ncap;
    }
    p->stack[p->sp++] = v;
    return 0;
}

/* The stack's floor: values below the innermost mark belong to an outer
 * construct and may not be popped by a plain opcode. */
static size_t floor_of(const sae_pickle *p)
{
    return p->n_marks ? p->marks[p->n_marks - 1] : 0;
}

/* Pops n values into out[0..n) (bottom first), or fails. */
static int pop_n(sae_pickle *p, size_t n, sae_pk_value **out, const char *op)
{
    if (p->sp - floor_of(p) < n)
        return pk_fail(p, SAE_EFORMAT, "%s needs %zu values on the stack, it has %zu", op, n,
                       p->sp - floor_of(p));
    p->sp -= n;
    memcpy(out, p->stack + p->sp, n * sizeof *out);
    return 0;
}

/* Pops the innermost mark; *from is where the values above it start. */
static int pop_mark(sae_pickle *p, size_t *from, const char *op)
{
    if (!p->n_marks)
        return pk_fail(p, SAE_EFORMAT, "%s without a MARK", op);
    *from = p->marks[--p->n_marks];
    return 0;
}

/* --------------------------------------------------------------- values */

/* A tuple or list of the n values at items. */
static sae_pk_value *make_seq(sae_pickle *p, sae_pk_kind k, sae_pk_value **items, size_t n)
{
    sae_pk_value *v = pk_new(p, k);
    if (!v)
        return NULL;
    if (n) {
        if (!(v->u.seq.items = pk_alloc(p, n * sizeof *items)))
            return NULL;
        memcpy(v->u.seq.items, items, n * sizeof *items);
    }
    v->u.seq.n = v->u.seq.cap = n;
    return v;
}

/* Appends key -> val to dict d (a repeated key is caught by the reader of
 * the result, which refuses it). */
static int dict_set(sae_pickle *p, sae_pk_value *d, sae_pk_value *key, sae_pk_value *val)
{
    if (d->kind != SAE_PK_DICT)
        return pk_fail(p, SAE_EFORMAT, "SETITEM on %s, not a dict", sae_pk_kind_name(d->kind));
    if (key->kind != SAE_PK_STR && key->kind != SAE_PK_INT)
        return pk_fail(p, SAE_EFORMAT, "a dict key is %s (strings and ints only)",
                       sae_pk_kind_name(key->kind));
    size_t n = d->u.dict.n, kcap = d->u.dict.cap, vcap = d->u.dict.cap;
    if (pk_grow(p, &d->u.dict.keys, n, &kcap) || pk_grow(p, &d->u.dict.vals, n, &vcap))
        return p->err->code;
    d->u.dict.cap = kcap;
    d->u.dict.keys[n] = key;
    d->u.dict.vals[n] = val;
    d->u.dict.n = n + 1;
    return 0;
}

/* APPEND/APPENDS: adds items[0..n) to the list at stack[at - 1]. */
static int list_append(sae_pickle *p, size_t at, sae_pk_value **items, size_t n, const char *op)
{
    sae_pk_value *list = at > floor_of(p) ? p->stack[at - 1] : NULL;
    if (!list || list->kind != SAE_PK_LIST)
        return pk_fail(p, SAE_EFORMAT, "%s without a list below", op);
    for (size_t i = 0; i < n; i++) {
        if (pk_grow(p, &list->u.seq.items, list->u.seq.n, &list->u.seq.cap))
            return p->err->code;
        list->u.seq.items[list->u.seq.n++] = items[i];
    }
    return 0;
}

/* An int from a tuple element, non-negative. */
static int want_uint(sae_pickle *p, const sae_pk_value *v, const char *what, uint64_t *out)
{
    if (v->kind != SAE_PK_INT)
        return pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: %s is %s, not an int", what,
                       sae_pk_kind_name(v->kind));
    if (v->u.i < 0)
        return pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: %s is negative (%lld)", what,
                       (long long)v->u.i);
    *out = (uint64_t)v->u.i;
    return 0;
}

/* The persistent id ('storage', torch.<T>Storage, key, location, numel): a
 * storage value. A key seen before must agree on type and numel. */
static sae_pk_value *load_storage(sae_pickle *p, const sae_pk_value *pid)
{
    const sae_pk_value **it = (const sae_pk_value **)pid->u.seq.items;
    if (pid->kind != SAE_PK_TUPLE || pid->u.seq.n != 5 || it[0]->kind != SAE_PK_STR ||
        strcmp(it[0]->u.str.s, "storage") != 0) {
        pk_fail(p, SAE_EFORMAT, "BINPERSID: the persistent id is not ('storage', type, key, "
                "location, numel)");
        return NULL;
    }
    if (it[1]->kind != SAE_PK_GLOBAL || it[1]->u.global < G_STORAGE0) {
        pk_fail(p, SAE_EFORMAT, "BINPERSID: the storage type is %s, not a torch.<Type>Storage",
                sae_pk_kind_name(it[1]->kind));
        return NULL;
    }
    if (it[2]->kind != SAE_PK_STR || it[3]->kind != SAE_PK_STR || it[4]->kind != SAE_PK_INT ||
        it[4]->u.i < 0) {
        pk_fail(p, SAE_EFORMAT, "BINPERSID: the storage key and location must be strings and "
                "its numel a non-negative int");
        return NULL;
    }
    sae_dtype dt = storage_types[it[1]->u.global - G_STORAGE0].dtype;
    const char *key = it[2]->u.str.s;
    uint64_t numel = (uint64_t)it[4]->u.i;
    size_t idx = 0;
    while (idx < p->n_storages && strcmp(p->storages[idx].key, key) != 0)
        idx++;
    if (idx < p->n_storages) {
        if (p->storages[idx].dtype != dt || p->storages[idx].numel != numel) {
            pk_fail(p, SAE_EFORMAT, "BINPERSID: storage \"%.64s\" declared again as %s x %llu "
                    "(first %s x %llu)",
                    key, sae_dtype_name(dt), (unsigned long long)numel,
                    sae_dtype_name(p->storages[idx].dtype),
                    (unsigned long long)p->storages[idx].numel);
            return NULL;
        }
    } else {
        if (p->n_storages == p->storages_cap) {
            size_t ncap = p->storages_cap ? p->storages_cap * 2 : 8;
            sae_pk_storage *s = pk_alloc(p, ncap * sizeof *s);
            if (!s)
                return NULL;
            if (p->n_storages)
                memcpy(s, p->storages, p->n_storages * sizeof *s);
            p->storages = s;
            p->storages_cap = ncap;
        }
        p->storages[idx] = (sae_pk_storage){.key = key, .dtype = dt, .numel = numel};
        p->n_storages++;
    }
    sae_pk_value *v = pk_new(p, SAE_PK_STORAGE);
    if (v)
        v->u.storage = idx;
    return v;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks): checks the shape (checked product), that the tensor is
 * C-contiguous (strides of size-1 dimensions do not matter, as in torch's
 * is_contiguous) and that it lies inside its storage. */
static sae_pk_value *rebuild_tensor(sae_pickle *p, const sae_pk_value *args)
{
    if (args->kind != SAE_PK_TUPLE || (args->u.seq.n != 6 && args->u.seq.n != 7)) {
        pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2 takes 6 arguments, got %s of %zu",
                sae_pk_kind_name(args->kind), args->kind == SAE_PK_TUPLE ? args->u.seq.n : 0);
        return NULL;
    }
    sae_pk_value **a = args->u.seq.items;
    if (args->u.seq.n == 7) {
        pk_fail(p, SAE_EINVAL, "_rebuild_tensor_v2 with tensor metadata (a 7th argument) is not "
                "supported: a state_dict of plain tensors is");
        return NULL;
    }
    if (a[0]->kind != SAE_PK_STORAGE) {
        pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: the storage is %s",
                sae_pk_kind_name(a[0]->kind));
        return NULL;
    }
    const sae_pk_storage *st = &p->storages[a[0]->u.storage];
    uint64_t offset = 0;
    if (want_uint(p, a[1], "the storage offset", &offset))
        return NULL;
    if (a[2]->kind != SAE_PK_TUPLE || a[3]->kind != SAE_PK_TUPLE ||
        a[2]->u.seq.n != a[3]->u.seq.n) {
        pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: size and stride are not tuples of one "
                "length");
        return NULL;
    }
    size_t ndim = a[2]->u.seq.n;
    if (ndim > SAE_PK_MAX_DIMS) {
        pk_fail(p, SAE_EINVAL, "a tensor of %zu dimensions (at most %d)", ndim, SAE_PK_MAX_DIMS);
        return NULL;
    }
    if (a[4]->kind != SAE_PK_BOOL) {
        pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: requires_grad is %s, not a bool",
                sae_pk_kind_name(a[4]->kind));
        return NULL;
    }
    if (a[5]->kind != SAE_PK_DICT || a[5]->u.dict.n != 0) {
        pk_fail(p, SAE_EINVAL, "_rebuild_tensor_v2: backward_hooks is not an empty OrderedDict "
                "(a tensor with hooks is not a state_dict's)");
        return NULL;
    }
    sae_pk_value *v = pk_new(p, SAE_PK_TENSOR);
    if (!v)
        return NULL;
    sae_pk_tensor *t = &v->u.tensor;
    t->storage = a[0]->u.storage;
    t->offset = offset;
    t->ndim = (int)ndim;
    uint64_t stride[SAE_PK_MAX_DIMS];
    size_t n = 1;
    bool overflow = false;
    for (size_t d = 0; d < ndim; d++) {
        if (want_uint(p, a[2]->u.seq.items[d], "a size", &t->shape[d]) ||
            want_uint(p, a[3]->u.seq.items[d], "a stride", &stride[d]))
            return NULL;
        overflow |= t->shape[d] > SIZE_MAX || sae_mul_size(n, (size_t)t->shape[d], &n);
    }
    if (overflow) {
        pk_fail(p, SAE_EFORMAT, "_rebuild_tensor_v2: the size's product overflows");
        return NULL;
    }
    t->n_elems = n;
    if (n == 0)
        return v;
    uint64_t expect = 1;
    for (size_t d = ndim; d-- > 0;) {
        if (t->shape[d] != 1 && stride[d] != expect) {
            pk_fail(p, SAE_EINVAL, "a tensor of storage \"%.64s\" is not contiguous (dimension "
                    "%zu has stride %llu, not %llu): a view or slice; save tensor.contiguous() "
                    "or clone() it",
                    st->key, d, (unsigned long long)stride[d], (unsigned long long)expect);
            return NULL;
        }
        expect *= t->shape[d]; /* <= n: no overflow */
    }
    if (offset > st->numel || n > st->numel - offset) {
        pk_fail(p, SAE_EFORMAT, "a tensor of storage \"%.64s\" needs elements %llu to %llu of "
                "a storage of %llu",
                st->key, (unsigned long long)offset, (unsigned long long)offset + n,
                (unsigned long long)st->numel);
        return NULL;
    }
    return v;
}

/* REDUCE on one of the allowed callables. */
static sae_pk_value *reduce(sae_pickle *p, const sae_pk_value *fn, const sae_pk_value *args)
{
    if (fn->kind != SAE_PK_GLOBAL) {
        pk_fail(p, SAE_EFORMAT, "REDUCE calls %s, not a global", sae_pk_kind_name(fn->kind));
        return NULL;
    }
    switch (fn->u.global) {
    case G_ORDERED_DICT:
        if (args->kind != SAE_PK_TUPLE || args->u.seq.n != 0) {
            pk_fail(p, SAE_EFORMAT, "collections.OrderedDict is called with arguments (only "
                    "OrderedDict() is allowed)");
            return NULL;
        }
        return pk_new(p, SAE_PK_DICT);
    case G_REBUILD_TENSOR_V2:
        return rebuild_tensor(p, args);
    case G_REBUILD_PARAMETER:
        /* (tensor, requires_grad, backward_hooks): an nn.Parameter is its tensor here. */
        if (args->kind != SAE_PK_TUPLE || args->u.seq.n != 3 ||
            args->u.seq.items[0]->kind != SAE_PK_TENSOR ||
            args->u.seq.items[1]->kind != SAE_PK_BOOL ||
            args->u.seq.items[2]->kind != SAE_PK_DICT || args->u.seq.items[2]->u.dict.n) {
            pk_fail(p, SAE_EFORMAT, "_rebuild_parameter takes (tensor, requires_grad, "
                    "OrderedDict())");
            return NULL;
        }
        return args->u.seq.items[0];
    default:
        pk_fail(p, SAE_EFORMAT, "REDUCE calls torch.%s, which is not callable here",
                storage_types[fn->u.global - G_STORAGE0].name);
        return NULL;
    }
}

/* Reads a GLOBAL's "module\nname\n" and returns the allowed global, or
 * refuses it by name. */
static sae_pk_value *load_global(sae_pickle *p)
{
    char part[2][128];
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        for (;;) {
            const uint8_t *c = take(p, 1, "GLOBAL");
            if (!c)
                return NULL;
            if (*c == '\n')
                break;
            if (*c < 0x20 || *c > 0x7e || n + 1 >= sizeof part[k]) {
                pk_fail(p, SAE_EFORMAT, "GLOBAL: the %s is not a short printable name",
                        k ? "name" : "module");
                return NULL;
            }
            part[k][n++] = (char)*c;
        }
        part[k][n] = '\0';
    }
    const char *mod = part[0], *name = part[1];
    int g = -1;
    if (strcmp(mod, "collections") == 0 && strcmp(name, "OrderedDict") == 0)
        g = G_ORDERED_DICT;
    else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0)
        g = G_REBUILD_TENSOR_V2;
    else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0)
        g = G_REBUILD_PARAMETER;
    else if (strcmp(mod, "torch") == 0)
        for (size_t i = 0; i < N_STORAGE_TYPES; i++)
            if (strcmp(name, storage_types[i].name) == 0)
                g = G_STORAGE0 + (int)i;
    if (g < 0) {
        pk_fail(p, SAE_EFORMAT, "global %s.%s is not allowed: this reader loads state_dicts "
                "only (tensors and plain values), it never imports or calls anything%s",
                mod, name,
                strncmp(mod, "torch", 5) == 0
                    ? ""
                    : " (a pickled object of a class? save model.state_dict() instead)");
        return NULL;
    }
    sae_pk_value *v = pk_new(p, SAE_PK_GLOBAL);
    if (v)
        v->u.global = g;
    return v;
}

/* BINUNICODE: a length-prefixed UTF-8 string, copied NUL-terminated into the
 * arena. jansson is the UTF-8 judge (the strings may end up in metadata). */
static sae_pk_value *load_unicode(sae_pickle *p)
{
    const uint8_t *b = take(p, 4, "BINUNICODE");
    if (!b)
        return NULL;
    size_t n = (size_t)le_uint(b, 4);
    const uint8_t *s = take(p, n, "BINUNICODE");
    if (!s)
        return NULL;
    if (memchr(s, 0, n)) {
        pk_fail(p, SAE_EFORMAT, "a string holds a NUL character");
        return NULL;
    }
    json_t *check = json_stringn((const char *)s, n);
    if (!check) {
        pk_fail(p, SAE_EFORMAT, "a string is not valid UTF-8");
        return NULL;
    }
    json_decref(check);
    sae_pk_value *v = pk_new(p, SAE_PK_STR);
    char *c = v ? pk_alloc(p, n + 1) : NULL;
    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    v->u.str.s = c;
    v->u.str.n = n;
    return v;
}

/* An int value. */
static sae_pk_value *make_int(sae_pickle *p, int64_t i)
{
    sae_pk_value *v = pk_new(p, SAE_PK_INT);
    if (v)
        v->u.i = i;
    return v;
}

/* LONG1: n <= 8 bytes of little-endian two's complement. */
static sae_pk_value *load_long1(sae_pickle *p)
{
    const uint8_t *b = take(p, 1, "LONG1");
    if (!b)
        return NULL;
    size_t n = *b;
    if (n > 8) {
        pk_fail(p, SAE_EFORMAT, "LONG1 of %zu bytes: an int past 64 bits", n);
        return NULL;
    }
    const uint8_t *d = take(p, n, "LONG1");
    if (!d)
        return NULL;
    uint64_t u = le_uint(d, n);
    if (n && n < 8 && (d[n - 1] & 0x80))
        u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return make_int(p, i);
}

/* Memo index checks shared by PUT and GET. */
static int memo_index(sae_pickle *p, size_t idx, bool get, const char *op)
{
    if (idx >= SAE_PK_MAX_MEMO)
        return pk_fail(p, SAE_EFORMAT, "%s: memo index %zu is past the limit of %u", op, idx,
                       SAE_PK_MAX_MEMO);
    if (get && (idx >= p->memo_cap || !p->memo[idx]))
        return pk_fail(p, SAE_EFORMAT, "%s: memo index %zu was never stored", op, idx);
    return 0;
}

/* BINPUT / LONG_BINPUT: remembers the top of the stack (not a mark). */
static int memo_put(sae_pickle *p, size_t idx, const char *op)
{
    int rc = memo_index(p, idx, false, op);
    if (rc)
        return rc;
    if (p->sp == floor_of(p))
        return pk_fail(p, SAE_EFORMAT, "%s with nothing on the stack above the mark", op);
    if (idx >= p->memo_cap) {
        size_t ncap = p->memo_cap ? p->memo_cap : 64;
        while (ncap <= idx)
            ncap *= 2;
        if (ncap > SAE_PK_MAX_MEMO)
            ncap = SAE_PK_MAX_MEMO;
        sae_pk_value **m = realloc(p->memo, ncap * sizeof *m);
        if (!m)
            return pk_fail(p, SAE_ENOMEM, "out of memory");
        memset(m + p->memo_cap, 0, (ncap - p->memo_cap) * sizeof *m);
        p->memo = m;
        p->memo_cap = ncap;
    }
    p->memo[idx] = p->stack[p->sp - 1];
    return 0;
}

/* Runs one opcode. Returns 0, or the error code; *stop is set by STOP. */
static int step(sae_pickle *p, bool *stop)
{
    p->op_at = (size_t)(p->p - p->start);
    const uint8_t *b = take(p, 1, "an opcode");
    if (!b)
        return p->err->code;
    uint8_t op = *b;
    sae_pk_value *v[3];
    size_t from = 0;
    int rc;
    switch (op) {
    case 0x80: /* PROTO */
        if (!(b = take(p, 1, "PROTO")))
            return p->err->code;
        if (p->op_at != 0 || *b < 2 || *b > 3)
            return pk_fail(p, SAE_EINVAL, "pickle protocol %u%s (torch.save writes 2; 2 and 3 "
                           "are read)",
                           *b, p->op_at ? " not at the start" : "");
        return 0;
    case 'c':
        return push(p, load_global(p));
    case 'q':
        if (!(b = take(p, 1, "BINPUT")))
            return p->err->code;
        return memo_put(p, *b, "BINPUT");
    case 'r':
        if (!(b = take(p, 4, "LONG_BINPUT")))
            return p->err->code;
        return memo_put(p, (size_t)le_uint(b, 4), "LONG_BINPUT");
    case 'h':
    case 'j': {
        const char *name = op == 'h' ? "BINGET" : "LONG_BINGET";
        if (!(b = take(p, op == 'h' ? 1 : 4, name)))
            return p->err->code;
        size_t idx = (size_t)le_uint(b, op == 'h' ? 1 : 4);
        if ((rc = memo_index(p, idx, true, name)))
            return rc;
        return push(p, p->memo[idx]);
    }
    case '(':
        if (p->n_marks == SAE_PK_MAX_MARKS)
            return pk_fail(p, SAE_EFORMAT, "more than %d nested MARKs", SAE_PK_MAX_MARKS);
        if (!p->marks && !(p->marks = malloc(SAE_PK_MAX_MARKS * sizeof *p->marks)))
            return pk_fail(p, SAE_ENOMEM, "out of memory");
        p->marks[p->n_marks++] = p->sp;
        return 0;
    case ')':
        return push(p, make_seq(p, SAE_PK_TUPLE, NULL, 0));
    case 't':
        if ((rc = pop_mark(p, &from, "TUPLE")))
            return rc;
        v[0] = make_seq(p, SAE_PK_TUPLE, p->stack + from, p->sp - from);
        p->sp = from;
        return push(p, v[0]);
    case 0x85:
    case 0x86:
    case 0x87: {
        size_t n = (size_t)(op - 0x84);
        if ((rc = pop_n(p, n, v, opcode_name(op))))
            return rc;
        return push(p, make_seq(p, SAE_PK_TUPLE, v, n));
    }
    case '}':
        return push(p, pk_new(p, SAE_PK_DICT));
    case ']':
        return push(p, pk_new(p, SAE_PK_LIST));
    case 's':
        if ((rc = pop_n(p, 2, v, "SETITEM")))
            return rc;
        if (p->sp == floor_of(p))
            return pk_fail(p, SAE_EFORMAT, "SETITEM without a dict below the key and value");
        return dict_set(p, p->stack[p->sp - 1], v[0], v[1]);
    case 'u':
        if ((rc = pop_mark(p, &from, "SETITEMS")))
            return rc;
        if ((p->sp - from) % 2 || from == floor_of(p))
            return pk_fail(p, SAE_EFORMAT, "SETITEMS needs a dict below the mark and pairs "
                           "above it");
        for (size_t i = from; i < p->sp; i += 2)
            if ((rc = dict_set(p, p->stack[from - 1], p->stack[i], p->stack[i + 1])))
                return rc;
        p->sp = from;
        return 0;
    case 'a':
        if ((rc = pop_n(p, 1, v, "APPEND")))
            return rc;
        return list_append(p, p->sp, v, 1, "APPEND");
    case 'e':
        if ((rc = pop_mark(p, &from, "APPENDS")))
            return rc;
        rc = list_append(p, from, p->stack + from, p->sp - from, "APPENDS");
        p->sp = from;
        return rc;
    case 'R':
        if ((rc = pop_n(p, 2, v, "REDUCE")))
            return rc;
        return push(p, reduce(p, v[0], v[1]));
    case 'b':
        /* OrderedDict's state ({'_metadata': ...}) sets an attribute, not items:
         * checked for shape and dropped. */
        if ((rc = pop_n(p, 1, v, "BUILD")))
            return rc;
        if (p->sp == floor_of(p) || p->stack[p->sp - 1]->kind != SAE_PK_DICT ||
            v[0]->kind != SAE_PK_DICT)
            return pk_fail(p, SAE_EFORMAT, "BUILD is allowed only on an OrderedDict with a dict "
                           "state");
        return 0;
    case 'Q':
        if ((rc = pop_n(p, 1, v, "BINPERSID")))
            return rc;
        return push(p, load_storage(p, v[0]));
    case 'X':
        return push(p, load_unicode(p));
    case 'K':
    case 'M':
        if (!(b = take(p, op == 'K' ? 1 : 2, opcode_name(op))))
            return p->err->code;
        return push(p, make_int(p, (int64_t)le_uint(b, op == 'K' ? 1 : 2)));
    case 'J':
        if (!(b = take(p, 4, "BININT")))
            return p->err->code;
        return push(p, make_int(p, (int32_t)(uint32_t)le_uint(b, 4)));
    case 0x8a:
        return push(p, load_long1(p));
    case 'G': {
        if (!(b = take(p, 8, "BINFLOAT")))
            return p->err->code;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = u << 8 | b[i]; /* big-endian */
        v[0] = pk_new(p, SAE_PK_FLOAT);
        if (v[0])
            memcpy(&v[0]->u.f, &u, sizeof u);
        return push(p, v[0]);
    }
    case 0x88:
    case 0x89:
        v[0] = pk_new(p, SAE_PK_BOOL);
        if (v[0])
            v[0]->u.b = op == 0x88;
        return push(p, v[0]);
    case 'N':
        return push(p, pk_new(p, SAE_PK_NONE));
    case '.':
        if (p->n_marks || p->sp != 1)
            return pk_fail(p, SAE_EFORMAT, "STOP with %zu values and %zu marks on the stack "
                           "(1 and 0 expected)",
                           p->sp, p->n_marks);
        p->root = p->stack[0];
        *stop = true;
        return 0;
    default:
        return pk_fail(p, SAE_EFORMAT, "opcode %s (0x%02x) is not allowed: this reader loads "
                       "state_dicts only, and a state_dict never uses it",
                       opcode_name(op), op);
    }
}

/* Runs opcodes until STOP; trailing bytes after STOP are refused. */
int sae_pickle_load(const char *name, const uint8_t *buf, size_t len, sae_pickle **out,
                    sae_error *err)
{
    sae_error local;
    if (!err)
        err = &local;
    sae_error_clear(err);
    sae_pickle *p = calloc(1, sizeof *p);
    if (!p)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
    p->name = name;
    p->start = p->p = buf;
    p->end = buf + len;
    p->err = err;
    /* Values take at most ~48 bytes per input byte (a 1-byte EMPTY_DICT is a
     * value; a 2-byte BINGET in a TUPLE costs a pointer), plus slack. */
    p->arena_cap = len > (SIZE_MAX - (1u << 20)) / 64 ? SIZE_MAX : len * 64 + (1u << 20);
    /* Allocated up front: stack + from must never be NULL + 0 (a TUPLE or
     * APPENDS above an empty stack; the fuzz finding of SECURITY.md). */
    p->stack_cap = 64;
    if (!(p->stack = malloc(p->stack_cap * sizeof *p->stack))) {
        free(p);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", name);
    }
    bool stop = false;
    int rc = 0;
    while (!stop && !rc)
        rc = step(p, &stop);
    if (!rc && p->p != p->end) {
        p->op_at = (size_t)(p->p - p->start);
        rc = pk_fail(p, SAE_EFORMAT, "%zu bytes after STOP", (size_t)(p->end - p->p));
    }
    free(p->stack);
    free(p->marks);
    free(p->memo);
    p->stack = NULL;
    p->marks = NULL;
    p->memo = NULL;
    p->name = NULL;
    p->err = NULL;
    if (rc) {
        sae_pickle_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

const sae_pk_value *sae_pickle_root(const sae_pickle *p)
{
    return p->root;
}

size_t sae_pickle_storage_count(const sae_pickle *p)
{
    return p->n_storages;
}

const sae_pk_storage *sae_pickle_storage_at(const sae_pickle *p, size_t i)
{
    return i < p->n_storages ? &p->storages[i] : NULL;
}

/* Frees the arena's blocks and the machine. */
void sae_pickle_free(sae_pickle *p)
{
    if (!p)
        return;
    for (pk_block *b = p->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(p->stack);
    free(p->marks);
    free(p->memo);
    free(p);
}
