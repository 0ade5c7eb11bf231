/* SPDX-License-Identifier: MIT */
/*
 * A sparse flat guest memory for testing the instruction emulator: pages are
 * created on first touch, their initial bytes produced by a fill function
 * (by default a pattern derived from (seed, page number)), so a second run
 * (the reference CPU, unicorn_ref.h) can be given the very same initial
 * bytes: `init` keeps them, `data` is what the emulator left.
 *
 * The callbacks implement struct pgm_emu_mem with linear = flat address; an
 * access outside `limit`, on a `forbidden` page, or beyond the page budget
 * is -EFAULT. For directed tests they can also inject a fault on the N-th
 * access and make compare-exchanges lose races.
 */
#ifndef PGM_TESTS_FLAT_MEM_H
#define PGM_TESTS_FLAT_MEM_H

#include <stdint.h>

#include "src/emu/emu.h"

#define FLAT_MAX_PAGES 24
#define FLAT_MAX_FORBIDDEN 8
/** What an access returns when `fault_after` fires (a caller-defined code). */
#define FLAT_FAULT (-1000)

struct flat_page {
    uint64_t pfn;
    uint8_t init[4096];
    uint8_t data[4096];
};

/** Produces the initial bytes of page `pfn`. */
typedef void flat_fill_fn(void *arg, uint64_t pfn, uint8_t page[4096]);

struct flat {
    uint64_t seed;              /* for the default fill */
    flat_fill_fn *fill;         /* NULL: the seeded pattern */
    void *fill_arg;
    uint64_t limit;             /* addresses must be below */
    uint64_t forbidden[FLAT_MAX_FORBIDDEN];    /* page numbers never touched */
    unsigned nforbidden;
    unsigned npages;
    struct flat_page pages[FLAT_MAX_PAGES];
    unsigned accesses;          /* callbacks made (counted with fault_after) */
    unsigned last_size;         /* size of the last access */
    int fail_cmpxchg;           /* make this many cmpxchg calls lose a race */
    int fault_after;            /* FLAT_FAULT on access number N (-1: never) */
};

/** splitmix64's finaliser: the same input gives the same output. */
uint64_t flat_mix64(uint64_t x);

/** Empty memory, seeded pattern, no faults, nothing forbidden. */
void flat_init(struct flat *f, uint64_t seed, uint64_t limit);
/** Add a page that may never be touched (no-op when the list is full). */
void flat_forbid(struct flat *f, uint64_t pfn);
/** The page, created (filled) on first use; NULL when forbidden or over budget. */
struct flat_page *flat_page(struct flat *f, uint64_t pfn);
/** The page if it exists, without creating it. */
const struct flat_page *flat_find(const struct flat *f, uint64_t pfn);
/** The byte at `la` (its page must be valid). */
uint8_t *flat_byte(struct flat *f, uint64_t la);

/* struct pgm_emu_mem callbacks; ctx is the struct flat. */
int flat_read(void *ctx, uint64_t la, void *buf, unsigned size);
int flat_write(void *ctx, uint64_t la, const void *buf, unsigned size);
int flat_cmpxchg(void *ctx, uint64_t la, void *expected, const void *desired,
                 unsigned size);

#endif /* PGM_TESTS_FLAT_MEM_H */
