/* SPDX-License-Identifier: MIT */
/*
 * The role of a shadow page and the pool key (docs/shadow-plan.md section 2).
 *
 * A shadow page is identified by (gfn, role): the gfn of the guest table it
 * shadows (or the first gfn of the range a direct page maps) and a 32-bit
 * role saying how that table is shadowed. Two pages with the same key have
 * the same content, so returning to a known address space is one lookup per
 * root. Keys compare by `role.word`: build roles from a zero word (see
 * pgm_role_make) so the 15 unused bits stay zero and never split a key.
 */
#ifndef PGM_SRC_POOL_ROLE_H
#define PGM_SRC_POOL_ROLE_H

#include <stdbool.h>
#include <stdint.h>

#include "pgm/types.h"

union pgm_role {
    uint32_t word;
    struct {
        unsigned level : 3;      /* shadow level, 1 = leaf table */
        unsigned guest_mode : 3; /* PGM_MODE_* whose table this shadows */
        unsigned quadrant : 2;   /* which slice of a 1024-entry guest table */
        unsigned direct : 1;     /* maps a gfn range (paging off, split guest large page) */
        unsigned access : 3;     /* pgm_rights of all upper guest levels */
        unsigned cr0_wp : 1;     /* content built under CR0.WP (the WP=0 conversion) */
        unsigned nxe : 1;        /* XD meaningful */
        unsigned smep_andnot_wp : 1;
        unsigned smap_andnot_wp : 1;
        unsigned invalid : 1;    /* zapped while still a root */
        unsigned fmt32 : 1;      /* 32-bit shadow format: 1024 4-byte entries */
        unsigned pse : 1;        /* 32-bit guests: CR4.PSE (whether a PDE's PS bit
                                  * makes a 4 MiB page), so a directory shadowed
                                  * under one setting is not reused under the other */
    };
};

_Static_assert(sizeof(union pgm_role) == sizeof(uint32_t), "a role is one 32-bit word");
_Static_assert(PGM_MODE_COUNT <= 8, "guest_mode is a 3-bit field");
_Static_assert((PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC) <= 7, "access is a 3-bit field");

/* Shadow levels run from 1 (leaf table) to 5 (LA57 root). */
#define PGM_ROLE_LEVEL_MAX 5

/* A role with only @level and @guest_mode set; set other fields by name. */
static inline union pgm_role
pgm_role_make(unsigned level, enum pgm_guest_mode guest_mode)
{
    union pgm_role role = { .word = 0 };
    role.level = level & 7u;
    role.guest_mode = (unsigned)guest_mode & 7u;
    return role;
}

static inline bool
pgm_role_equal(union pgm_role a, union pgm_role b)
{
    return a.word == b.word;
}

/* The pool key. `gfn` is a guest-physical page number (GPA >> 12). */
struct pgm_pool_key {
    uint64_t gfn;
    union pgm_role role;
};

static inline struct pgm_pool_key
pgm_pool_key_make(uint64_t gfn, union pgm_role role)
{
    return (struct pgm_pool_key){ .gfn = gfn, .role = role };
}

static inline bool
pgm_pool_key_equal(struct pgm_pool_key a, struct pgm_pool_key b)
{
    return a.gfn == b.gfn && a.role.word == b.role.word;
}

/* A 64-bit finaliser (MurmurHash3 fmix64): every input bit moves every output bit. */
static inline uint64_t
pgm_pool_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/*
 * Hash of a gfn alone. The pool buckets its pages by this hash, not by the
 * full key, so that every role of one gfn sits on one chain (see pool.h).
 */
static inline uint64_t
pgm_pool_gfn_hash(uint64_t gfn)
{
    return pgm_pool_mix64(gfn);
}

/*
 * Hash of the full key, for tables keyed by (gfn, role) such as a per-vCPU
 * cache of recent roots. Distinct roles of one gfn hash apart.
 */
static inline uint64_t
pgm_pool_key_hash(struct pgm_pool_key key)
{
    return pgm_pool_mix64(key.gfn ^ pgm_pool_mix64((uint64_t)key.role.word + 1));
}

#endif /* PGM_SRC_POOL_ROLE_H */
