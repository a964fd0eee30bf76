/* index_hist.h: the fixed histogram every feature's values fall into, the
 * quantile groups made of its bins, and the exact sum of a feature's values
 * (docs/INDEX.md). Fixed independently of the data, so shards' histograms and
 * sums add up to the unsharded ones bit for bit; the store reads the bins'
 * edges from here and the daemon names them. */
#ifndef SAE_INDEX_HIST_H
#define SAE_INDEX_HIST_H

#include <stddef.h>
#include <stdint.h>

/* ---- the fixed histogram ----
 * Bin 0 holds (0, 2^-16); bins 1..256 split [2^-16, 2^16) into 8 bins per
 * octave with edges 2^e * (1 + k/8), read straight from a float's exponent and
 * top three mantissa bits; bin 257 holds [2^16, +inf). Quantile groups are
 * unions of these bins, so they too are fixed independently of the data. */
#define SAE_HIST_BINS 258
#define SAE_HIST_PER_OCTAVE 8
#define SAE_HIST_MIN_EXP (-16)
#define SAE_HIST_MAX_EXP 16
/* Written to the index's meta table as the histogram's definition. */
#define SAE_HIST_DEFINITION "log2x8:-16:16"

/* The bin of a positive finite value. */
int sae_hist_bin(float v);
/* Lower edge of bin b (0 for bin 0); exact. */
double sae_hist_lo(int b);
/* Upper edge of bin b (+inf for the last bin); exact. */
double sae_hist_hi(int b);

/* ---- an exact sum of non-negative floats ----
 * A 384-bit fixed-point integer in units of 2^-150 (the smallest subnormal is
 * 2^-149, the largest float below 2^128), with 64 bits of headroom for
 * carries: every float sum is exact, so shard sums add up to the unsharded
 * sum bit for bit. */
#define SAE_EXACT_LIMBS 6
typedef struct sae_exact_sum {
    uint64_t limb[SAE_EXACT_LIMBS]; /* little-endian limbs */
} sae_exact_sum;
/* Adds v (>= 0, finite). */
void sae_exact_sum_add(sae_exact_sum *s, float v);
/* s += o. */
void sae_exact_sum_merge(sae_exact_sum *s, const sae_exact_sum *o);
/* The sum as a double, rounded the same way every time. */
double sae_exact_sum_value(const sae_exact_sum *s);

/* ---- quantile groups ----
 * Group of bin b for a feature whose max is `max` (> 0): bin 0 is group 0;
 * otherwise min(Q-1, floor(Q*lo(b)/max)), computed exactly. */
uint32_t sae_quantile_group(int b, float max, uint32_t q);

/* ---- the linear histogram Neuronpedia stores ----
 * SAEDashboard (and so Neuronpedia) draws `bars` equal bins from the smallest
 * to the largest non-zero activation, each bar's value its bin's midpoint.
 * The index keeps only the fixed bins above, so this is that histogram
 * rebinned: each fixed bin's count is spread over the linear bars it overlaps
 * in proportion to the overlap (uniform within a fixed bin, whose width is
 * 1/8 octave), over [lower edge of the lowest non-empty fixed bin, max], and
 * rounded to whole counts by largest remainder so the bars sum to the total.
 * A count can move only between bars that one fixed bin overlaps; the total,
 * the range's top (max) and the bars' values are exact. edges (n + 1, the last
 * may be +inf) and counts (n) are the trimmed bins (sae_store_histogram);
 * heights and values get `bars` (<= SAE_HIST_BINS) entries, all 0 when n is 0
 * or max <= 0. */
#define SAE_NP_HIST_BARS 50

/* ---- the same histogram, exact (SAEDashboard's own definition) ----
 * SAEDashboard's ActsHistogramData.from_data over a feature's non-zero
 * activations, with lo and hi their float32 min and max: bar heights are
 * torch.histc(data, bins=50) on the CPU, i.e. bar = (int)((v - lo) * 50 /
 * (hi - lo)) in float32 arithmetic, a value at hi counted in the last bar (lo
 * == hi: the range is widened to [lo - 1, hi + 1], so every value lands in bar
 * 25). sae_np_bar is that bar of one value v in [lo, hi]. */
size_t sae_np_bar(float v, float lo, float hi);
/* The bars' values as SAEDashboard writes them: bin_edges[j] + bin_size / 2
 * rounded to 5 decimals, where bin_edges = torch.linspace(lo, hi, 51) in
 * float32 as PyTorch's CPU kernel computes it (8-float vectors from the
 * nearer end, the last 3 scalar), bin_size = (hi - lo) / 50 in double, and
 * the sum taken in float32. values gets SAE_NP_HIST_BARS entries. */
void sae_np_bar_values(float lo, float hi, double *values);
void sae_hist_linear(const double *edges, const uint64_t *counts, size_t n, double max,
                     size_t bars, uint64_t *heights, double *values);

#endif
