/* dtype.c: element sizes and names of the safetensors dtypes, and exact float
 * conversions between F16, BF16, F32 and F64.
 *
 * Every half (F16) and bfloat16 value is exactly representable as a float, so
 * the widening conversions are exact bit manipulations. The narrowing ones
 * round to nearest, ties to even, as numpy and PyTorch do, and keep NaN a NaN
 * (quiet, same sign). Elements are read byte by byte from little-endian
 * storage, so sources of any alignment are fine. */
#include "io/dtype.h"

#include <string.h>

/* Size and safetensors name of every dtype, indexed by sae_dtype. */
static const struct {
    const char *name;
    size_t size;
} dtype_table[SAE_DT_COUNT] = {
    [SAE_DT_BOOL] = {"BOOL", 1},       [SAE_DT_U8] = {"U8", 1},
    [SAE_DT_I8] = {"I8", 1},           [SAE_DT_I16] = {"I16", 2},
    [SAE_DT_U16] = {"U16", 2},         [SAE_DT_I32] = {"I32", 4},
    [SAE_DT_U32] = {"U32", 4},         [SAE_DT_I64] = {"I64", 8},
    [SAE_DT_U64] = {"U64", 8},         [SAE_DT_F16] = {"F16", 2},
    [SAE_DT_BF16] = {"BF16", 2},       [SAE_DT_F32] = {"F32", 4},
    [SAE_DT_F64] = {"F64", 8},         [SAE_DT_F8_E4M3] = {"F8_E4M3", 1},
    [SAE_DT_F8_E5M2] = {"F8_E5M2", 1},
};

/* Element size in bytes; 0 for a value outside the enum. */
size_t sae_dtype_size(sae_dtype t)
{
    return (unsigned)t < SAE_DT_COUNT ? dtype_table[t].size : 0;
}

/* The safetensors spelling, or "?" outside the enum. */
const char *sae_dtype_name(sae_dtype t)
{
    return (unsigned)t < SAE_DT_COUNT ? dtype_table[t].name : "?";
}

/* Exact, case-sensitive match against the safetensors spellings. */
int sae_dtype_parse(const char *name, sae_dtype *out)
{
    for (int t = 0; t < SAE_DT_COUNT; t++) {
        if (strcmp(name, dtype_table[t].name) == 0) {
            *out = (sae_dtype)t;
            return 0;
        }
    }
    return -1;
}

/* Reinterprets a float as its bits and back (memcpy is the defined way). */
static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Widens a half exactly: rebias normals, normalise subnormals, keep inf/NaN. */
float sae_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf or NaN: keep the payload bits */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0)
        return bits_f32(sign);
    /* Subnormal half: man * 2^-24, exact in float. Normalise the mantissa. */
    int e = -1;
    do {
        man <<= 1;
        e++;
    } while (!(man & 0x400u));
    return bits_f32(sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13));
}

/* A bfloat16 is the top half of a float. */
float sae_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

/* Narrows to a half, rounding to nearest even; overflow gives inf, and values
 * below half the smallest subnormal give a signed zero. */
uint16_t sae_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) /* inf stays inf; NaN becomes a quiet NaN */
        return sign | 0x7c00u | (man ? 0x200u | (uint16_t)(man >> 13) : 0);
    /* |f| as an unbiased exponent e: value = 1.man * 2^(exp-127). */
    int e = (int)exp - 127;
    if (e > 15) /* at least 2^16: beyond the largest half (65504) */
        return sign | 0x7c00u;
    if (e >= -14) {
        /* Normal half: keep 10 mantissa bits, round the dropped 13 to even. */
        uint32_t h = ((uint32_t)(e + 15) << 10) | (man >> 13);
        uint32_t rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is the right answer, up to inf */
        return sign | (uint16_t)h;
    }
    if (e < -25) /* below half the smallest subnormal (2^-24): rounds to zero */
        return sign;
    /* Subnormal half: in units of 2^-24 the value is full * 2^(e+1), full the 24-bit
     * significand, so shift right by -(e+1) and round what falls off. */
    uint32_t full = man | 0x800000u; /* 24-bit significand */
    int shift = -e - 1;               /* 14..24: bits dropped from `full` */
    uint32_t h = full >> shift;
    uint32_t rest = full & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u)))
        h++; /* may carry into the smallest normal, which is again right */
    return sign | (uint16_t)h;
}

/* Narrows to bfloat16 by rounding the low 16 bits to nearest even. */
uint16_t sae_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) /* NaN: quiet, keep sign */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow rounds to inf */
    return (uint16_t)(u >> 16);
}

/* Element-wise widening of little-endian storage; F32 is a plain copy on a
 * little-endian host. */
int sae_convert_to_f32(sae_dtype t, const void *src, size_t n, float *dst)
{
    const uint8_t *p = src;
    switch (t) {
    case SAE_DT_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (n)
            memcpy(dst, src, n * sizeof *dst);
#else
        for (size_t i = 0; i < n; i++, p += 4)
            dst[i] = bits_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                              (uint32_t)p[3] << 24);
#endif
        return 0;
    case SAE_DT_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = sae_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        return 0;
    case SAE_DT_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = sae_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        return 0;
    case SAE_DT_F64:
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--)
                u = u << 8 | p[b];
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d; /* the C conversion rounds to nearest even */
        }
        return 0;
    default:
        return -1;
    }
}

/* Element-wise narrowing into little-endian storage. */
int sae_convert_from_f32(sae_dtype t, const float *src, size_t n, void *dst)
{
    uint8_t *p = dst;
    switch (t) {
    case SAE_DT_F32:
        for (size_t i = 0; i < n; i++, p += 4) {
            uint32_t u = f32_bits(src[i]);
            p[0] = (uint8_t)u, p[1] = (uint8_t)(u >> 8);
            p[2] = (uint8_t)(u >> 16), p[3] = (uint8_t)(u >> 24);
        }
        return 0;
    case SAE_DT_F16:
    case SAE_DT_BF16:
        for (size_t i = 0; i < n; i++, p += 2) {
            uint16_t h = t == SAE_DT_F16 ? sae_f32_to_f16(src[i]) : sae_f32_to_bf16(src[i]);
            p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
        }
        return 0;
    case SAE_DT_F64:
        for (size_t i = 0; i < n; i++, p += 8) {
            double d = src[i];
            uint64_t u;
            memcpy(&u, &d, sizeof u);
            for (int b = 0; b < 8; b++)
                p[b] = (uint8_t)(u >> (8 * b));
        }
        return 0;
    default:
        return -1;
    }
}

/* The dtypes weights and activations may use (F8 variants are not among them). */
bool sae_dtype_is_float(sae_dtype t)
{
    return t == SAE_DT_F16 || t == SAE_DT_BF16 || t == SAE_DT_F32 || t == SAE_DT_F64;
}
