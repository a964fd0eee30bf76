/* clock.h: the one monotonic clock of the house. Every duration that saed,
 * sae, the benches and the tests measure comes from here, so they agree. */
#ifndef SAE_CLOCK_H
#define SAE_CLOCK_H

#include <stdint.h>

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double sae_clock_s(void);

/* Microseconds since the same point, for deadlines kept as integers. */
int64_t sae_clock_us(void);

#endif
