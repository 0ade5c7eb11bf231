/* SPDX-License-Identifier: MIT */
/*
 * compare: compare two result files of the same case file.
 *
 *   compare [--min N] [--max-print N] CASEFILE RESULTS_A RESULTS_B
 *
 * Results are matched to cases by order (one result line per case line that
 * is not blank or a comment). A case is skipped when either side says
 * `skip=`. Otherwise the outcome (fault/no fault/#GP/error), the error code,
 * the GPA, the page size and every mem value must be equal, except that on a
 * walk that faults on both sides, entries the walk passed through to a lower
 * level (upper-level, non-leaf entries) may differ in the A bit (0x20): the
 * SDM lets hardware set A in those even when the access faults.
 *
 * Prints each mismatch with its case line, then
 * `N compared, N mismatched, N skipped`. Exit 1 on any mismatch or if fewer
 * than --min cases were compared, 2 on bad input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "case.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct upper {
    unsigned n;
    uint64_t gpa[5];
};

/* Entries a walk of @c passes through (present, pointing to a lower table).
 * Uses the initial memory; only bit 5 of these entries gets the latitude. */
static void upper_entries(const struct wcase *c, struct upper *u)
{
    uint64_t pa_mask = c->maxphyaddr >= 52 ? 0x000ffffffffff000ull
                                           : (((1ull << c->maxphyaddr) - 1) & ~0xfffull);
    uint64_t rsvd_addr = 0x000ffffffffff000ull & ~pa_mask;
    uint64_t table;
    int level, top;

    u->n = 0;
    switch (c->mode) {
    case WCASE_32:
        table = c->cr3 & 0xfffff000ull;
        for (level = 2; level >= 1; level--) {
            uint64_t ea = table + (((c->va >> (level == 2 ? 22 : 12)) & 1023) << 2);
            uint64_t e = wcase_read_initial(c, ea, 4);

            if (!(e & 1) || ea >= WCASE_RAM_SIZE || level == 1 || (c->pse && (e & 0x80)))
                return;
            u->gpa[u->n++] = ea;
            table = e & 0xfffff000ull;
        }
        return;
    case WCASE_PAE:
        /* PDPTEs come from the PDPTE registers and have no A bit */
        {
            uint64_t ea = (c->cr3 & 0xffffffe0ull) + ((c->va >> 30) & 3) * 8;
            uint64_t e = wcase_read_initial(c, ea, 8);

            if (!(e & 1))
                return;
            table = e & pa_mask;
        }
        top = 2;
        break;
    case WCASE_AMD64:
        top = 4;
        table = c->cr3 & pa_mask;
        break;
    case WCASE_LA57:
        top = 5;
        table = c->cr3 & pa_mask;
        break;
    default:
        return;
    }
    for (level = top; level >= 1; level--) {
        uint64_t ea = table + ((c->va >> (12 + 9 * (level - 1))) & 511) * 8;
        uint64_t e = wcase_read_initial(c, ea, 8);
        bool rsvd = (e & rsvd_addr) || (!c->nxe && (e >> 63));

        if (!(e & 1) || rsvd || ea >= WCASE_RAM_SIZE || level == 1)
            return;
        if (e & 0x80)
            return; /* a large leaf, or PS where it is reserved */
        if (c->mode == WCASE_PAE && (e >> 52 & 0x7ff))
            return; /* bits 62:52 are reserved in PAE entries */
        u->gpa[u->n++] = ea;
        table = e & pa_mask;
    }
}

/* Bits of mem item @m where A of an upper-level entry lives. */
static uint64_t a_latitude(const struct wcase_mem *m, const struct upper *u)
{
    uint64_t mask = 0;

    for (unsigned i = 0; i < u->n; i++) {
        uint64_t b = u->gpa[i]; /* A is bit 5 of byte 0 */

        if (b >= m->gpa && b < m->gpa + m->size)
            mask |= 0x20ull << (8 * (b - m->gpa));
    }
    return mask;
}

static bool next_result(FILE *f, char **line, size_t *cap, struct wresult *r, unsigned long *lineno)
{
    while (getline(line, cap, f) >= 0) {
        int k;

        (*lineno)++;
        (*line)[strcspn(*line, "\r\n")] = '\0';
        k = wresult_parse(*line, r);
        if (k == 0)
            continue;
        if (k < 0) {
            r->kind = WRES_ERROR;
            snprintf(r->reason, sizeof(r->reason), "unparsable result line: %.60s", *line);
        }
        return true;
    }
    return false;
}

/* Returns NULL if equal, else a description of the first difference. */
static const char *diff(const struct wcase *c, const struct wresult *a, const struct wresult *b,
                        char *why, size_t len)
{
    struct upper u = {0};

    if (a->kind != b->kind)
        return "outcome differs";
    switch (a->kind) {
    case WRES_ERROR:
        return NULL; /* both reject the line */
    case WRES_OK:
        if (a->gpa != b->gpa)
            return "gpa differs";
        if (a->size_shift != b->size_shift)
            return "page size differs";
        break;
    case WRES_PF:
        if (a->ec != b->ec)
            return "error code differs";
        upper_entries(c, &u);
        break;
    default:
        break;
    }
    if (a->nmem != c->nmem || b->nmem != c->nmem)
        return "number of mem values differs from the case";
    for (unsigned i = 0; i < c->nmem; i++) {
        uint64_t ignore = a_latitude(&c->mem[i], &u);

        if (a->memgpa[i] != c->mem[i].gpa || b->memgpa[i] != c->mem[i].gpa)
            return "mem addresses differ from the case";
        if ((a->memval[i] ^ b->memval[i]) & ~ignore) {
            snprintf(why, len, "mem 0x%llx differs: 0x%llx vs 0x%llx",
                     (unsigned long long)c->mem[i].gpa, (unsigned long long)a->memval[i],
                     (unsigned long long)b->memval[i]);
            return why;
        }
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: compare [--min N] [--max-print N] CASEFILE RESULTS_A RESULTS_B\n");
}

int main(int argc, char **argv)
{
    unsigned long min = 0, max_print = 50;
    const char *files[3];
    unsigned nfiles = 0;
    FILE *fc, *fa, *fb;
    char *lc = NULL, *la = NULL, *lb = NULL;
    size_t cc = 0, ca = 0, cb = 0;
    unsigned long nc = 0, na = 0, nb = 0;
    unsigned long compared = 0, mismatched = 0, skipped = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min") && i + 1 < argc) {
            min = strtoul(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--max-print") && i + 1 < argc) {
            max_print = strtoul(argv[++i], NULL, 0);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usage();
            return 2;
        } else if (nfiles < 3) {
            files[nfiles++] = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (nfiles != 3) {
        usage();
        return 2;
    }
    fc = fopen(files[0], "r");
    fa = fopen(files[1], "r");
    fb = fopen(files[2], "r");
    if (!fc || !fa || !fb) {
        perror("compare: open");
        return 2;
    }

    while (getline(&lc, &cc, fc) >= 0) {
        struct wcase c;
        struct wresult ra, rb;
        char reason[96], why[160];
        const char *d;
        int k;

        nc++;
        lc[strcspn(lc, "\r\n")] = '\0';
        k = wcase_parse(lc, &c, reason, sizeof(reason));
        if (k == 0)
            continue;
        if (!next_result(fa, &la, &ca, &ra, &na) || !next_result(fb, &lb, &cb, &rb, &nb)) {
            fprintf(stderr, "compare: a result file ends before case line %lu\n", nc);
            return 2;
        }
        if (ra.kind == WRES_SKIP || rb.kind == WRES_SKIP) {
            skipped++;
            continue;
        }
        compared++;
        d = k < 0 ? (ra.kind == WRES_ERROR && rb.kind == WRES_ERROR ? NULL : "malformed case")
                  : diff(&c, &ra, &rb, why, sizeof(why));
        if (d) {
            mismatched++;
            if (mismatched <= max_print) {
                printf("MISMATCH (%s) at %s:%lu\n  case: %s\n  %s: %s\n  %s: %s\n", d, files[0],
                       nc, lc, files[1], la, files[2], lb);
            }
        }
    }
    {
        struct wresult extra;

        if (next_result(fa, &la, &ca, &extra, &na) || next_result(fb, &lb, &cb, &extra, &nb)) {
            fprintf(stderr, "compare: a result file has more results than there are cases\n");
            return 2;
        }
    }
    if (mismatched > max_print)
        printf("(%lu more mismatches not shown)\n", mismatched - max_print);
    printf("%lu compared, %lu mismatched, %lu skipped\n", compared, mismatched, skipped);
    free(lc);
    free(la);
    free(lb);
    fclose(fc);
    fclose(fa);
    fclose(fb);
    if (compared < min) {
        printf("compare: only %lu cases compared, fewer than the minimum %lu\n", compared, min);
        return 1;
    }
    return mismatched ? 1 : 0;
}
