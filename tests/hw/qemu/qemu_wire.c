/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu's protocol with the guest (guest/qg.h): the blob of cases that
 * QEMU's loader device puts in guest memory, and the result lines the guest
 * prints on the debugcon port:
 *
 *   R <idx> <vec> <ec> <cr2> <rip> <cl> m=<v0>,<v1>.. [P <vec> <ec> <cr2> <rip> <cl> m=..] .
 *
 * in hex (see guest/main.c): the access excursion, then the D probe's; the
 * m= values are the case's mem items read back, in case order. A line is
 * only complete with its final " .": QEMU may die in the middle of one.
 */
#include "qemu_mmu.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;

        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            perror("qemu_mmu: realloc");
            exit(2);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void blob_case(struct buf *b, const struct plan *p, uint32_t idx)
{
    const struct wcase *c = &p->c;
    struct qg_case r;

    memset(&r, 0, sizeof(r));
    r.len = (uint32_t)(sizeof(r) + c->nmem * sizeof(struct qg_mem));
    r.idx = idx;
    r.mode = p->mode;
    r.cpl = c->cpl;
    r.acc = c->acc == 'r' ? QG_ACC_R : c->acc == 'w' ? QG_ACC_W : QG_ACC_X;
    r.cr0 = c->wp ? 0x10000u : 0;
    r.cr4 = (c->pse ? 1u << 4 : 0) | (c->pge ? 1u << 7 : 0) | (c->smep ? 1u << 20 : 0) |
            (c->smap ? 1u << 21 : 0) | (c->pke ? 1u << 22 : 0);
    if (p->mode != QG_MODE_32)
        r.cr4 |= 1u << 5; /* PAE */
    if (p->mode == QG_MODE_LM5)
        r.cr4 |= 1u << 12; /* LA57 */
    r.efer = (c->nxe ? 1u << 11 : 0) | (p->mode >= QG_MODE_LM4 ? 1u << 8 : 0);
    r.pkru = c->pkru;
    r.ac = c->ac;
    r.cr3 = c->cr3;
    r.va = c->va;
    r.slot = p->slot;
    r.slot_gpa = (uint32_t)p->slot_gpa;
    r.slot_val = p->slot_val;
    r.slot_size = p->slot_size;
    r.plant_gpa = p->plant;
    r.probe = 1;
    r.esize = c->mode == WCASE_32 ? 4 : 8;
    r.nmem = c->nmem;
    buf_add(b, &r, sizeof(r));
    for (unsigned i = 0; i < c->nmem; i++) {
        struct qg_mem m = {(uint32_t)c->mem[i].gpa, c->mem[i].size, c->mem[i].val};

        buf_add(b, &m, sizeof(m));
    }
}

unsigned char *blob_build(const struct plan *plans, const size_t *list, size_t n, size_t *len)
{
    struct buf b = {0};
    struct qg_blob_hdr h = {QG_BLOB_MAGIC, (uint32_t)n, 0, 0};
    uint32_t total_len;

    buf_add(&b, &h, sizeof(h));
    for (size_t i = 0; i < n; i++)
        blob_case(&b, &plans[list[i]], (uint32_t)i);
    /* b.p is only byte-aligned as far as the compiler knows: no cast */
    total_len = (uint32_t)b.len;
    memcpy(b.p + offsetof(struct qg_blob_hdr, total_len), &total_len, sizeof(total_len));
    if (b.len > QG_BLOB_MAX) {
        fprintf(stderr, "qemu_mmu: blob too large\n");
        exit(2);
    }
    *len = b.len;
    return b.p;
}

static int parse_excursion(char **sp, struct excursion *x)
{
    char *s = *sp, *end;
    unsigned long long v[5];

    for (int i = 0; i < 5; i++) {
        errno = 0;
        v[i] = strtoull(s, &end, 16);
        if (end == s || errno)
            return -1;
        s = end;
    }
    x->vec = (unsigned)v[0];
    x->ec = (uint32_t)v[1];
    x->cr2 = v[2];
    x->rip = v[3];
    x->rcx = v[4];
    while (*s == ' ')
        s++;
    if (strncmp(s, "m=", 2))
        return -1;
    s += 2;
    x->nmem = 0;
    while (*s && *s != ' ' && *s != '\n') {
        if (x->nmem == WCASE_MAX_MEM)
            return -1;
        errno = 0;
        x->mem[x->nmem++] = strtoull(s, &end, 16);
        if (end == s || errno)
            return -1;
        s = end;
        if (*s == ',')
            s++;
    }
    *sp = s;
    return 0;
}

void result_line(char *line, struct gresult *gres, size_t n)
{
    char *s = line, *end;
    unsigned long idx;

    if (strncmp(s, "R ", 2))
        return;
    {
        size_t len = strlen(s);

        /* a complete line ends with " .\n" (QEMU may die mid-line) */
        if (len < 3 || strcmp(s + len - 3, " .\n"))
            return;
    }
    s += 2;
    idx = strtoul(s, &end, 16);
    if (end == s || idx >= n)
        return;
    s = end;
    if (parse_excursion(&s, &gres[idx].acc) < 0)
        return;
    while (*s == ' ')
        s++;
    if (!strncmp(s, "P ", 2)) {
        s += 2;
        if (parse_excursion(&s, &gres[idx].probe) < 0)
            return;
        gres[idx].have_probe = 1;
    }
    gres[idx].have = 1;
}
