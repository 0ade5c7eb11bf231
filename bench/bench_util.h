/* SPDX-License-Identifier: MIT */
/* What every bench program needs: a clock, and setup writes that must work. */
#ifndef PGM_BENCH_UTIL_H
#define PGM_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pgm/pgm.h"

/* Monotonic time in nanoseconds. */
static inline double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A 64-bit guest-physical write of the setup; a failure ends the program. */
static inline void
put(struct pgm_vm *vm, uint64_t gpa, uint64_t v)
{
    if (pgm_phys_write(vm, gpa, &v, 8) != 0) {
        fprintf(stderr, "bench: setup write at %#llx failed\n", (unsigned long long)gpa);
        exit(1);
    }
}

#endif /* PGM_BENCH_UTIL_H */
