/* rng.h: a small seeded generator (xoshiro256**, seeded by splitmix64) so that
 * synth, train, fixtures and benchmarks are deterministic across machines. */
#ifndef SAE_RNG_H
#define SAE_RNG_H

#include <stdint.h>

typedef struct sae_rng {
    uint64_t s[4];
} sae_rng;

void sae_rng_seed(sae_rng *r, uint64_t seed);
uint64_t sae_rng_next(sae_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double sae_rng_uniform(sae_rng *r);
/* Uniform integer in [0, n). */
uint64_t sae_rng_below(sae_rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value, so the stream is simple). */
double sae_rng_normal(sae_rng *r);
/* A 64-bit mix of x (splitmix64 finaliser): a seeded hash for sampling. */
uint64_t sae_hash64(uint64_t x);

#endif
