/* SPDX-License-Identifier: MIT */
/* Numeric guest-mode ids usable in #if (they equal enum pgm_guest_mode). */
#ifndef PGM_SRC_MODES_TMPL_IDS_H
#define PGM_SRC_MODES_TMPL_IDS_H

#define PGM_GMODE_REAL  0
#define PGM_GMODE_PROT  1
#define PGM_GMODE_32BIT 2
#define PGM_GMODE_PAE   3
#define PGM_GMODE_AMD64 4
#define PGM_GMODE_LA57  5

#endif /* PGM_SRC_MODES_TMPL_IDS_H */
