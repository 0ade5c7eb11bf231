/* SPDX-License-Identifier: MIT */
/* Selection of the guest-mode and pair ("both") instances for a mode. */
#include "pgm/vm.h"
#include "src/modes/guest.h"
#include "src/modes/tmpl_ids.h"

_Static_assert(PGM_MODE_REAL == PGM_GMODE_REAL && PGM_MODE_PROT == PGM_GMODE_PROT &&
               PGM_MODE_32BIT == PGM_GMODE_32BIT && PGM_MODE_PAE == PGM_GMODE_PAE &&
               PGM_MODE_AMD64 == PGM_GMODE_AMD64 && PGM_MODE_LA57 == PGM_GMODE_LA57,
               "template mode numbers must match enum pgm_guest_mode");

const struct pgm_guest_ops *
pgm_guest_ops_for(enum pgm_guest_mode mode)
{
    static const struct pgm_guest_ops *const table[PGM_MODE_COUNT] = {
        [PGM_MODE_REAL] = &pgm_guest_ops_real,   [PGM_MODE_PROT] = &pgm_guest_ops_prot,
        [PGM_MODE_32BIT] = &pgm_guest_ops_32bit, [PGM_MODE_PAE] = &pgm_guest_ops_pae,
        [PGM_MODE_AMD64] = &pgm_guest_ops_amd64, [PGM_MODE_LA57] = &pgm_guest_ops_la57,
    };
    return (unsigned)mode < PGM_MODE_COUNT ? table[mode] : table[PGM_MODE_REAL];
}

/*
 * The mode matrix of DESIGN.md section 5 (rows: guest mode, columns: host
 * paging). IA-32e guests need a 64-bit host; PAE guests run on PAE-format
 * shadows everywhere; real, protected and 32-bit guests on 32-bit-format
 * shadows under a 32-bit host and on PAE-format ones otherwise.
 */
const struct pgm_both_ops *
pgm_both_ops_for(int paging, enum pgm_guest_mode mode)
{
    static const struct pgm_both_ops *const amd64[PGM_MODE_COUNT] = {
        [PGM_MODE_REAL] = &pgm_both_ops_real,   [PGM_MODE_PROT] = &pgm_both_ops_prot,
        [PGM_MODE_32BIT] = &pgm_both_ops_32bit, [PGM_MODE_PAE] = &pgm_both_ops_pae,
        [PGM_MODE_AMD64] = &pgm_both_ops_amd64, [PGM_MODE_LA57] = &pgm_both_ops_la57,
    };
    static const struct pgm_both_ops *const pae[PGM_MODE_COUNT] = {
        [PGM_MODE_REAL] = &pgm_both_ops_real,   [PGM_MODE_PROT] = &pgm_both_ops_prot,
        [PGM_MODE_32BIT] = &pgm_both_ops_32bit, [PGM_MODE_PAE] = &pgm_both_ops_pae,
    };
    static const struct pgm_both_ops *const x32[PGM_MODE_COUNT] = {
        [PGM_MODE_REAL] = &pgm_both_ops32_real,   [PGM_MODE_PROT] = &pgm_both_ops32_prot,
        [PGM_MODE_32BIT] = &pgm_both_ops32_32bit, [PGM_MODE_PAE] = &pgm_both_ops_pae,
    };
    if ((unsigned)mode >= PGM_MODE_COUNT)
        return NULL;
    switch (paging) {
    case PGM_PAGING_SHADOW_AMD64: return amd64[mode];
    case PGM_PAGING_SHADOW_PAE:   return pae[mode];
    case PGM_PAGING_SHADOW_32:    return x32[mode];
    default:                      return NULL;
    }
}
