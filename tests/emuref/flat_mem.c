/* SPDX-License-Identifier: MIT */
/* A sparse flat guest memory for emulator tests: see flat_mem.h. */
#include "flat_mem.h"

#include <errno.h>
#include <string.h>

uint64_t
flat_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void
fill_seeded(uint64_t seed, uint64_t pfn, uint8_t page[4096])
{
    uint64_t s = flat_mix64(seed ^ (pfn * 0x2545f4914f6cdd1dull));
    for (unsigned i = 0; i < 4096; i += 8) {
        uint64_t v = flat_mix64(s + i);
        /* some zero and all-ones runs make carries and ZF likely */
        if ((v & 0x700) == 0)
            v = 0;
        else if ((v & 0x700) == 0x100)
            v = ~0ull;
        memcpy(page + i, &v, 8);
    }
}

void
flat_init(struct flat *f, uint64_t seed, uint64_t limit)
{
    f->seed = seed;
    f->fill = NULL;
    f->fill_arg = NULL;
    f->limit = limit;
    f->nforbidden = 0;
    f->npages = 0;
    f->accesses = 0;
    f->last_size = 0;
    f->fail_cmpxchg = 0;
    f->fault_after = -1;
}

void
flat_forbid(struct flat *f, uint64_t pfn)
{
    if (f->nforbidden < FLAT_MAX_FORBIDDEN)
        f->forbidden[f->nforbidden++] = pfn;
}

const struct flat_page *
flat_find(const struct flat *f, uint64_t pfn)
{
    for (unsigned i = 0; i < f->npages; i++)
        if (f->pages[i].pfn == pfn)
            return &f->pages[i];
    return NULL;
}

struct flat_page *
flat_page(struct flat *f, uint64_t pfn)
{
    for (unsigned i = 0; i < f->npages; i++)
        if (f->pages[i].pfn == pfn)
            return &f->pages[i];
    for (unsigned i = 0; i < f->nforbidden; i++)
        if (f->forbidden[i] == pfn)
            return NULL;
    if (f->npages == FLAT_MAX_PAGES)
        return NULL;
    struct flat_page *p = &f->pages[f->npages++];
    p->pfn = pfn;
    if (f->fill)
        f->fill(f->fill_arg, pfn, p->init);
    else
        fill_seeded(f->seed, pfn, p->init);
    memcpy(p->data, p->init, 4096);
    return p;
}

/* Resolve each byte; -EFAULT when outside the limit or the page budget. */
static int
flat_check(struct flat *f, uint64_t la, unsigned size)
{
    if (f->fault_after >= 0 && f->accesses++ == (unsigned)f->fault_after)
        return FLAT_FAULT;
    f->last_size = size;
    if (la + size < la || la + size > f->limit)
        return -EFAULT;
    if (!flat_page(f, la >> 12) || !flat_page(f, (la + size - 1) >> 12))
        return -EFAULT;
    return 0;
}

uint8_t *
flat_byte(struct flat *f, uint64_t la)
{
    return &flat_page(f, la >> 12)->data[la & 4095];
}

int
flat_read(void *ctx, uint64_t la, void *buf, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    for (unsigned i = 0; i < size; i++)
        ((uint8_t *)buf)[i] = *flat_byte(f, la + i);
    return 0;
}

int
flat_write(void *ctx, uint64_t la, const void *buf, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    for (unsigned i = 0; i < size; i++)
        *flat_byte(f, la + i) = ((const uint8_t *)buf)[i];
    return 0;
}

int
flat_cmpxchg(void *ctx, uint64_t la, void *expected, const void *desired, unsigned size)
{
    struct flat *f = ctx;
    int rc = flat_check(f, la, size);
    if (rc)
        return rc;
    uint8_t cur[16];
    for (unsigned i = 0; i < size; i++)
        cur[i] = *flat_byte(f, la + i);
    if (f->fail_cmpxchg > 0) {
        /* another writer got there first: change memory, report it */
        f->fail_cmpxchg--;
        cur[0] ^= 0x5a;
        *flat_byte(f, la) = cur[0];
    }
    if (memcmp(cur, expected, size)) {
        memcpy(expected, cur, size);
        return 0;
    }
    for (unsigned i = 0; i < size; i++)
        *flat_byte(f, la + i) = ((const uint8_t *)desired)[i];
    return 0;
}
