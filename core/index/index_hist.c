/* index_hist.c: the fixed histogram, quantile groups and exact sums
 * (index_hist.h). */
#include "index/index_hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ histogram */

/* Float exponent-and-top-3-mantissa-bits codes of the histogram's range. */
#define HIST_CODE_LO ((127 + SAE_HIST_MIN_EXP) * SAE_HIST_PER_OCTAVE)
#define HIST_CODE_HI ((127 + SAE_HIST_MAX_EXP) * SAE_HIST_PER_OCTAVE)

int sae_hist_bin(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int code = (int)(bits >> 20); /* sign (0), 8 exponent bits, 3 mantissa bits */
    if (code < HIST_CODE_LO)
        return 0;
    if (code >= HIST_CODE_HI)
        return SAE_HIST_BINS - 1;
    return code - HIST_CODE_LO + 1;
}

double sae_hist_lo(int b)
{
    if (b <= 0)
        return 0.0;
    if (b >= SAE_HIST_BINS - 1)
        return ldexp(1.0, SAE_HIST_MAX_EXP);
    int k = b - 1;
    return ldexp(1.0 + (double)(k % SAE_HIST_PER_OCTAVE) / SAE_HIST_PER_OCTAVE,
                 SAE_HIST_MIN_EXP + k / SAE_HIST_PER_OCTAVE);
}

double sae_hist_hi(int b)
{
    if (b >= SAE_HIST_BINS - 1)
        return INFINITY;
    return sae_hist_lo(b + 1);
}

uint32_t sae_quantile_group(int b, float max, uint32_t q)
{
    if (b <= 0 || q <= 1)
        return 0;
    /* q*lo(b) and j*max (j < q <= 100) are exact in double: lo has 4
     * significant bits and max 24, so the floor below is exact too. */
    double lo = (double)q * sae_hist_lo(b), m = (double)max;
    if (lo >= (double)q * m)
        return q - 1;
    double j = floor(lo / m);
    while (j > 0 && j * m > lo)
        j--;
    while ((j + 1) * m <= lo)
        j++;
    return j >= q ? q - 1 : (uint32_t)j;
}

/* ------------------------------------------------------------ exact sum */

void sae_exact_sum_add(sae_exact_sum *s, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t e = (bits >> 23) & 0xff, frac = bits & 0x7fffff;
    if ((bits >> 31) || e == 0xff || (e == 0 && frac == 0))
        return; /* negative, zero or not finite: never an active value */
    uint64_t m = e ? (frac | 0x800000u) : frac;
    unsigned shift = e ? e : 1; /* v = m * 2^(shift - 150) */
    unsigned limb = shift / 64, off = shift % 64;
    unsigned __int128 add = (unsigned __int128)m << off;
    uint64_t lo = (uint64_t)add, hi = (uint64_t)(add >> 64);
    uint64_t old = s->limb[limb];
    s->limb[limb] = old + lo;
    uint64_t carry = hi + (s->limb[limb] < old);
    for (unsigned i = limb + 1; carry && i < SAE_EXACT_LIMBS; i++) {
        old = s->limb[i];
        s->limb[i] = old + carry;
        carry = s->limb[i] < old;
    }
}

void sae_exact_sum_merge(sae_exact_sum *s, const sae_exact_sum *o)
{
    uint64_t carry = 0;
    for (int i = 0; i < SAE_EXACT_LIMBS; i++) {
        uint64_t a = s->limb[i], t = a + o->limb[i];
        uint64_t c1 = t < a;
        s->limb[i] = t + carry;
        carry = c1 + (s->limb[i] < t);
    }
}

double sae_exact_sum_value(const sae_exact_sum *s)
{
    double r = 0.0;
    for (int i = SAE_EXACT_LIMBS - 1; i >= 0; i--)
        r += ldexp((double)s->limb[i], 64 * i - 150);
    return r;
}

void sae_hist_linear(const double *edges, const uint64_t *counts, size_t n, double max,
                     size_t bars, uint64_t *heights, double *values)
{
    for (size_t j = 0; j < bars; j++)
        heights[j] = 0, values[j] = 0;
    if (n == 0 || !(max > 0) || bars == 0 || bars > SAE_HIST_BINS)
        return;
    double lo = edges[0] < max ? edges[0] : 0, w = (max - lo) / (double)bars;
    for (size_t j = 0; j < bars; j++)
        values[j] = lo + ((double)j + 0.5) * w;
    /* Real-valued shares first, then whole counts by largest remainder. */
    double share[SAE_HIST_BINS];
    uint64_t total = 0;
    for (size_t j = 0; j < bars; j++)
        share[j] = 0;
    for (size_t b = 0; b < n; b++) {
        if (!counts[b])
            continue;
        total += counts[b];
        double a = edges[b], c = edges[b + 1] < max ? edges[b + 1] : max;
        if (a > max)
            a = max;
        if (c <= a) { /* a degenerate span: everything at a */
            size_t j = (size_t)((a - lo) / w);
            share[j < bars ? j : bars - 1] += (double)counts[b];
            continue;
        }
        size_t j0 = (size_t)((a - lo) / w), j1 = (size_t)((c - lo) / w);
        for (size_t j = j0; j <= j1 && j < bars; j++) {
            double x0 = lo + (double)j * w, x1 = j + 1 == bars ? max : x0 + w;
            double o = (c < x1 ? c : x1) - (a > x0 ? a : x0);
            if (o > 0)
                share[j] += (double)counts[b] * o / (c - a);
        }
    }
    uint64_t given = 0;
    for (size_t j = 0; j < bars; j++) {
        heights[j] = (uint64_t)share[j];
        given += heights[j];
        share[j] -= (double)heights[j];
    }
    /* Rounding can leave the floors a count over: take it back where the
     * remainder is smallest. */
    while (given > total) {
        size_t worst = bars;
        for (size_t j = 0; j < bars; j++)
            if (heights[j] && (worst == bars || share[j] < share[worst]))
                worst = j;
        heights[worst]--;
        share[worst] += 1;
        given--;
    }
    /* Hand out what floor() left, largest remainder first (ties: lower bar). */
    while (given < total) {
        size_t best = 0;
        for (size_t j = 1; j < bars; j++)
            if (share[j] > share[best])
                best = j;
        heights[best]++;
        share[best] = -1;
        given++;
    }
}

/* -------------------------------------------- SAEDashboard's exact bars */

/* torch.histc's range for data of min lo and max hi (lo == hi widened by 1
 * either side, in double, then held as float32 bin edges). */
static void np_range(float lo, float hi, float *left, float *right)
{
    *left = lo, *right = hi;
    if (lo == hi) {
        *left = (float)((double)lo - 1.0);
        *right = (float)((double)hi + 1.0);
    }
}

size_t sae_np_bar(float v, float lo, float hi)
{
    float left, right;
    np_range(lo, hi, &left, &right);
    if (!(right > left)) /* a range too wide for float32 to widen: all in one bar */
        return SAE_NP_HIST_BARS / 2;
    /* Each step rounded to float32, as histc's kernel computes it. */
    float d = v - left;
    float p = d * (float)SAE_NP_HIST_BARS;
    float q = p / (right - left);
    if (!(q > 0))
        return 0;
    if (q >= (float)SAE_NP_HIST_BARS)
        return SAE_NP_HIST_BARS - 1; /* the top edge belongs to the last bar */
    return (size_t)q;
}

void sae_np_bar_values(float lo, float hi, double *values)
{
    /* torch.linspace(lo, hi, 51) in float32: step = (hi - lo) / 50; entry i
     * is lo + step * i below the halfway point 25, hi - step * (50 - i) from
     * it; the CPU kernel fills 8-float vectors as base + k * step from each
     * vector's first entry, and the last 51 % 16 = 3 entries one by one. */
    const int steps = SAE_NP_HIST_BARS + 1, half = steps / 2, lanes = 8;
    const int vectorised = steps - steps % (2 * lanes);
    float step = (hi - lo) / (float)(steps - 1);
    float half_bin = (float)(((double)hi - (double)lo) / SAE_NP_HIST_BARS / 2);
    for (int i = 0; i < SAE_NP_HIST_BARS; i++) {
        int first = i < vectorised ? i - i % lanes : i;
        float base = first < half ? lo + step * (float)first
                                  : hi - step * (float)(steps - 1 - first);
        float prod = (float)(i - first) * step;
        float edge = base + prod;
        float v = edge + half_bin;
        /* round(x, 5): correctly rounded through the decimal text. */
        char text[64];
        snprintf(text, sizeof text, "%.5f", (double)v);
        values[i] = strtod(text, NULL);
    }
}
