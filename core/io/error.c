#include "io/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

int sae_error_set(sae_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void sae_error_clear(sae_error *err)
{
    if (err) {
        err->code = SAE_OK;
        err->msg[0] = '\0';
    }
}

int sae_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 1;
    *out = a * b;
    return 0;
}

int sae_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 1;
    *out = a + b;
    return 0;
}
