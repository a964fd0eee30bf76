/* dtype.h: element types of safetensors/npy files and float conversions.
 * F16/BF16 are converted to F32 once at load; the conversions here are exact
 * (every half and bfloat16 value is representable as a float). */
#ifndef SAE_DTYPE_H
#define SAE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sae_dtype {
    SAE_DT_BOOL, SAE_DT_U8, SAE_DT_I8, SAE_DT_I16, SAE_DT_U16, SAE_DT_I32, SAE_DT_U32,
    SAE_DT_I64, SAE_DT_U64, SAE_DT_F16, SAE_DT_BF16, SAE_DT_F32, SAE_DT_F64,
    SAE_DT_F8_E4M3, SAE_DT_F8_E5M2,
    SAE_DT_COUNT
} sae_dtype;

/* Size in bytes of one element. */
size_t sae_dtype_size(sae_dtype t);
/* safetensors name ("F32", "BF16", ...). */
const char *sae_dtype_name(sae_dtype t);
/* Parses a safetensors dtype name; returns 0 and sets *out, or -1 if unknown. */
int sae_dtype_parse(const char *name, sae_dtype *out);

float sae_f16_to_f32(uint16_t h);
float sae_bf16_to_f32(uint16_t h);
uint16_t sae_f32_to_f16(float f);  /* round to nearest even */
uint16_t sae_f32_to_bf16(float f); /* round to nearest even */

/* Converts n little-endian elements of F16/BF16/F32/F64 at src (any alignment)
 * to float. Returns 0, or -1 for a dtype that is not a float type. */
int sae_convert_to_f32(sae_dtype t, const void *src, size_t n, float *dst);

/* Converts n floats to little-endian F16/BF16/F32/F64 at dst (any alignment),
 * rounding to nearest even. Returns 0, or -1 for a dtype that is not a float type. */
int sae_convert_from_f32(sae_dtype t, const float *src, size_t n, void *dst);

/* True for F16, BF16, F32 and F64: the dtypes a model or activation file may use. */
bool sae_dtype_is_float(sae_dtype t);

#endif
