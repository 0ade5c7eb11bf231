/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu: run `pgm walk` cases on QEMU's TCG MMU (qemu-system-x86_64) and
 * print the results in the `pgm walk` output format.
 *
 *   qemu_mmu [-v] [--bios FILE] [--qemu PROG] [--keep DIR] < cases > results
 *
 * The guest (guest/, built into qemu_guest.bin) is the machine's BIOS. One
 * QEMU boot runs every case of one (MAXPHYADDR, gbpages) group: the host
 * writes the cases into a blob (-device loader), the guest executes each one
 * for real in the case's paging mode and prints what happened on the debugcon
 * port. See guest/qg.h for the machine layout and README.md for the method,
 * the QEMU deviations from the SDM that are excluded, and the limitations.
 *
 * What is observed and what is derived:
 *   - fault / no fault, the #PF error code and #GP: observed (the exception
 *     the access raised; CR2 must be the case's va);
 *   - mem values after the access: observed (read back after the access);
 *   - which entry was the leaf: observed (a second, privileged write access,
 *     after clearing bit 6 of every listed entry word, sets D in the leaf
 *     only);
 *   - gpa and size: derived from that leaf entry and its level, found by
 *     following the case's tables from CR3 (the "navigator" below, which
 *     decides nothing about faults); checked against the byte a read access
 *     returned, and for a fetch by the int3 planted at the derived gpa.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "case.h"
#include "guest/qg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ADDR_MASK 0x000ffffffffff000ull
/* cases per QEMU run: 10000 records of at most 608 bytes fit QG_BLOB_MAX */
#define MAX_BATCH 10000

static int verbose;
static const char *qemu_prog = "qemu-system-x86_64";
static char bios_path[PATH_MAX];
static const char *keep_dir;

/* snprintf that fails loudly instead of truncating (paths, options) */
static void fmt(char *dst, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));

static void fmt(char *dst, size_t n, const char *f, ...)
{
    va_list ap;
    int r;

    va_start(ap, f);
    r = vsnprintf(dst, n, f, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= n) {
        fprintf(stderr, "qemu_mmu: path or option too long\n");
        exit(2);
    }
}

/* ------------------------------------------------------------ planning */

struct pathent {
    uint64_t gpa;
    unsigned size;
    unsigned level;
};

struct plan {
    struct wcase c;
    int kind; /* 0 run, 1 error (malformed), 2 skip */
    char reason[96];
    /* navigator */
    unsigned npath;
    struct pathent path[6];
    int leaf_ok; /* a present leaf was reached */
    unsigned leaf_idx; /* index in path[] */
    unsigned size_shift;
    uint64_t target; /* translated gpa if leaf_ok */
    int noncanonical;
    /* harness */
    unsigned mode; /* QG_MODE_* */
    unsigned slot;
    uint64_t slot_gpa, slot_val;
    unsigned slot_size;
    uint32_t plant;
    int unplanted_fetch; /* fetch whose target is not RAM we control */
    struct wresult res;
    int done;
};

static void set_skip(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_skip(struct plan *p, const char *fmt, ...)
{
    va_list ap;

    p->kind = 2;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
    va_end(ap);
}

static uint64_t sext(uint64_t v, unsigned bits)
{
    return (uint64_t)((int64_t)(v << (64 - bits)) >> (64 - bits));
}

static int in_ram(uint64_t gpa, unsigned size)
{
    return gpa < WCASE_RAM_SIZE && gpa + size <= WCASE_RAM_SIZE;
}

/*
 * Follow the case's tables from CR3 to the leaf for va, recording every entry
 * read. This only navigates (present bit, and the PS bit where the mode gives
 * it a meaning); it does not check reserved bits or rights: the CPU decides
 * those. Returns 0, or -1 if an entry lies outside RAM (QEMU reads such
 * entries as 0, pgm as all-ones: not comparable).
 */
static int navigate(struct plan *p)
{
    const struct wcase *c = &p->c;
    uint64_t va = c->va, table, e;
    uint64_t addr_rsvd = (c->mode == WCASE_PAE ? 0x7fffffffffffffffull : 0x000fffffffffffffull) &
                         ~((1ull << c->maxphyaddr) - 1);
    int level, top;

    p->npath = 0;
    p->leaf_ok = 0;
#define ADD(g, sz, lvl)                                                                        \
    do {                                                                                       \
        if (!in_ram((g), (sz)))                                                                \
            return -1;                                                                         \
        p->path[p->npath].gpa = (g);                                                           \
        p->path[p->npath].size = (sz);                                                         \
        p->path[p->npath].level = (lvl);                                                       \
        p->npath++;                                                                            \
    } while (0)

    switch (c->mode) {
    case WCASE_32: {
        uint64_t pdea = (c->cr3 & 0xfffff000ull) + ((va >> 22) & 0x3ff) * 4;
        uint64_t ptea;

        ADD(pdea, 4, 2);
        e = wcase_read_initial(c, pdea, 4);
        if (!(e & 1))
            return 0;
        if (c->pse && (e & 0x80)) {
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = 22;
            /* PSE-36 as QEMU (and libpgm with MAXPHYADDR >= 40): bits 20:13
             * are PA 39:32 */
            p->target = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32) | (va & 0x3fffff);
            return 0;
        }
        ptea = (e & 0xfffff000ull) + ((va >> 12) & 0x3ff) * 4;
        ADD(ptea, 4, 1);
        e = wcase_read_initial(c, ptea, 4);
        if (!(e & 1))
            return 0;
        p->leaf_ok = 1;
        p->leaf_idx = p->npath - 1;
        p->size_shift = 12;
        p->target = (e & 0xfffff000ull) | (va & 0xfff);
        return 0;
    }
    case WCASE_PAE: {
        uint64_t a = (c->cr3 & 0xffffffe0ull) + ((va >> 30) & 3) * 8;

        ADD(a, 8, 3);
        e = wcase_read_initial(c, a, 8);
        if (!(e & 1))
            return 0;
        table = e & ADDR_MASK;
        top = 2;
        break;
    }
    case WCASE_AMD64:
    case WCASE_LA57:
        top = c->mode == WCASE_LA57 ? 5 : 4;
        if (sext(va, top == 5 ? 57 : 48) != va) {
            p->noncanonical = 1;
            return 0;
        }
        table = c->cr3 & ADDR_MASK;
        break;
    default:
        return 0;
    }
    for (level = top; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        uint64_t a = table + ((va >> shift) & 511) * 8;

        ADD(a, 8, (unsigned)level);
        e = wcase_read_initial(c, a, 8);
        if (!(e & 1))
            return 0;
        /* Address bits at or above MAXPHYADDR (and, in PAE entries, bits
         * 62:52; bit 63 without NXE) are reserved: the walk ends here with a
         * reserved-bit fault, so do not follow the pointer. */
        if ((e & addr_rsvd) || (!c->nxe && (e >> 63)))
            return 0;
        if ((e & 0x80) && level >= 4)
            return 0; /* PS in a PML4E/PML5E: reserved, the walk stops */
        if ((e & 0x80) && (level == 2 || level == 3)) {
            if (level == 3 && c->mode == WCASE_PAE)
                return 0;
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = shift;
            p->target = (e & ADDR_MASK & ~((1ull << shift) - 1)) | (va & ((1ull << shift) - 1));
            return 0;
        }
        if (level == 1) {
            p->leaf_ok = 1;
            p->leaf_idx = p->npath - 1;
            p->size_shift = 12;
            p->target = (e & ADDR_MASK) | (va & 0xfff);
            return 0;
        }
        table = e & ADDR_MASK;
    }
#undef ADD
    return 0;
}

static int overlaps(uint64_t a, unsigned an, uint64_t b, unsigned bn)
{
    return a < b + bn && b < a + an;
}

/* Is [gpa, gpa+n) free of everything the case uses? */
static int location_free(const struct plan *p, uint64_t gpa, unsigned n)
{
    const struct wcase *c = &p->c;

    for (unsigned i = 0; i < c->nmem; i++)
        if (overlaps(gpa, n, c->mem[i].gpa, c->mem[i].size))
            return 0;
    for (unsigned i = 0; i < p->npath; i++)
        if (overlaps(gpa, n, p->path[i].gpa, p->path[i].size))
            return 0;
    if (p->leaf_ok && overlaps(gpa, n, p->target, 1))
        return 0;
    return 1;
}

/* Pick the top-level slot that maps the harness into the case's space. */
static int choose_slot(struct plan *p)
{
    const struct wcase *c = &p->c;
    uint64_t base;
    unsigned nslots, esize, vaslot;

    switch (c->mode) {
    case WCASE_32:
        base = c->cr3 & 0xfffff000ull;
        nslots = 1024;
        esize = 4;
        vaslot = (unsigned)(c->va >> 22) & 1023;
        p->slot_val = (QG_HB + QG_OFF_PT32) | 7;
        break;
    case WCASE_PAE:
        base = c->cr3 & 0xffffffe0ull;
        nslots = 4;
        esize = 8;
        vaslot = (unsigned)(c->va >> 30) & 3;
        p->slot_val = (QG_HB + QG_OFF_PD) | 1;
        break;
    case WCASE_AMD64:
        base = c->cr3 & ADDR_MASK;
        nslots = 512;
        esize = 8;
        vaslot = (unsigned)(c->va >> 39) & 511;
        p->slot_val = (QG_HB + QG_OFF_PDPT) | 7;
        break;
    default:
        base = c->cr3 & ADDR_MASK;
        nslots = 512;
        esize = 8;
        vaslot = (unsigned)(c->va >> 48) & 511;
        p->slot_val = (QG_HB + QG_OFF_PML4) | 7;
        break;
    }
    if (!in_ram(base, esize * nslots))
        return -1;
    for (unsigned i = 0; i < nslots; i++) {
        unsigned s = nslots - 1 - i;
        uint64_t gpa = base + (uint64_t)s * esize;

        if (s == vaslot)
            continue;
        if (!location_free(p, gpa, esize))
            continue;
        p->slot = s;
        p->slot_gpa = gpa;
        p->slot_size = esize;
        return 0;
    }
    return -1;
}

/* PAE PDPTE reserved bits (SDM 4.4.1, Table 4-8): 2:1, 8:5, 63:MAXPHYADDR. */
static int pae_pdpte_reserved(const struct wcase *c, uint64_t e)
{
    uint64_t rsvd = 0x1e6ull | ~((1ull << c->maxphyaddr) - 1);

    return (e & 1) && (e & rsvd);
}

static void plan_case(struct plan *p)
{
    const struct wcase *c = &p->c;

    switch (c->mode) {
    case WCASE_32:
        p->mode = QG_MODE_32;
        break;
    case WCASE_PAE:
        p->mode = QG_MODE_PAE;
        break;
    case WCASE_AMD64:
        p->mode = QG_MODE_LM4;
        break;
    case WCASE_LA57:
        p->mode = QG_MODE_LM5;
        break;
    default:
        set_skip(p, "mode %s is not run by the QEMU harness", wcase_mode_name(c->mode));
        return;
    }
    /*
     * PSE-36: QEMU always takes PA 39:32 from PDE bits 20:13 and reserves only
     * bit 21, whatever phys-bits is; libpgm uses M = min(MAXPHYADDR, 40). They
     * agree for MAXPHYADDR >= 40 only. (Without CR4.PSE there are no 4 MiB
     * pages and no MAXPHYADDR dependence in 32-bit paging.)
     */
    if (c->mode == WCASE_32 && c->pse && c->maxphyaddr < 40) {
        set_skip(p, "PSE-36 with MAXPHYADDR < 40: QEMU always decodes 40 bits");
        return;
    }
    /*
     * QEMU TCG does not load the PAE PDPTE registers at MOV to CR3: it reads
     * the PDPTE on every walk, never raises #GP for a reserved bit (SDM 4.4.1:
     * "If any of the PDPTEs sets both the P flag and any reserved bit, the MOV
     * to CR3 causes a general-protection exception") and ignores bits 2:1 and
     * 8:5. Cases with such a PDPTE are excluded.
     */
    if (c->mode == WCASE_PAE) {
        uint64_t pdpt = c->cr3 & 0xffffffe0ull;

        if (!in_ram(pdpt, 32)) {
            set_skip(p, "PAE PDPT outside RAM (QEMU reads 0, pgm all-ones)");
            return;
        }
        for (unsigned i = 0; i < 4; i++)
            if (pae_pdpte_reserved(c, wcase_read_initial(c, pdpt + 8 * i, 8))) {
                set_skip(p, "PAE PDPTE with reserved bits: QEMU has no #GP at MOV CR3");
                return;
            }
    }
    /*
     * QEMU TCG's MOV to CR3 checks no reserved bit, so there is no #GP for a
     * CR3 with bits at or above MAXPHYADDR (SDM Vol. 2, MOV to/from Control
     * Registers: #GP(0) on an attempt to write a 1 to a reserved bit of CR3;
     * SDM 4.5.2: CR3 bits 63:M are reserved in 4/5-level paging).
     */
    if ((c->mode == WCASE_AMD64 || c->mode == WCASE_LA57) && c->maxphyaddr < 64 &&
        (c->cr3 >> c->maxphyaddr)) {
        set_skip(p, "CR3 with bits above MAXPHYADDR: QEMU has no #GP at MOV CR3");
        return;
    }
    if (navigate(p) < 0) {
        set_skip(p, "walk reads an entry outside RAM (QEMU reads 0, pgm all-ones)");
        return;
    }
    /*
     * QEMU's walker takes PS=1 in a PDPTE as a 1 GiB page whatever CPUID says;
     * without CPUID.80000001H:EDX.Page1GB that bit is reserved (SDM 4.5.4,
     * "reserved ... bit 7 in a PDPTE if 1-GByte pages are not supported").
     */
    if ((c->mode == WCASE_AMD64 || c->mode == WCASE_LA57) && !c->gbpages)
        for (unsigned i = 0; i < p->npath; i++)
            if (p->path[i].level == 3 &&
                (wcase_read_initial(c, p->path[i].gpa, 8) & 0x81) == 0x81) {
                set_skip(p, "PS=1 PDPTE without gbpages: QEMU maps a 1 GiB page");
                return;
            }
    if (p->noncanonical) {
        /* #GP before any walk; still needs a slot, which any will do */
        p->npath = 0;
    }
    if (choose_slot(p) < 0) {
        set_skip(p, "no free top-level slot for the harness");
        return;
    }
    p->plant = QG_NO_PLANT;
    if (p->leaf_ok && p->target >= 0xf8000000ull && p->target < 0x100000000ull) {
        /* harness VRAM, IOAPIC, HPET, LAPIC, BIOS ROM: not unassigned in QEMU */
        set_skip(p, "target GPA in QEMU's device/harness range 0xf8000000..4G");
        return;
    }
    if (c->acc == 'x' && p->leaf_ok) {
        if (p->target < WCASE_RAM_SIZE) {
            for (unsigned i = 0; i < p->npath; i++)
                if (overlaps(p->target, 1, p->path[i].gpa, p->path[i].size)) {
                    set_skip(p, "fetch target is a paging entry of the walk (bytes not controlled)");
                    return;
                }
            p->plant = (uint32_t)p->target;
        } else {
            p->unplanted_fetch = 1; /* unassigned: QEMU fetches 00 00 (add %al,(%rax)) */
            if ((c->va & 0xfff) == 0xfff) {
                set_skip(p, "unplanted fetch at the end of a page");
                return;
            }
        }
    }
}

/* ----------------------------------------------------------- the blob */

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

/* ---------------------------------------------------------- run QEMU */

struct excursion {
    unsigned vec;
    uint32_t ec;
    uint64_t cr2, rip, rcx;
    unsigned nmem;
    uint64_t mem[WCASE_MAX_MEM];
};

struct gresult {
    int have;
    struct excursion acc;
    int have_probe;
    struct excursion probe;
};

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

static char workdir[PATH_MAX];

/* Run the cases @list[0..n) (indexes into @plans) in one QEMU. Fills gres[] by
 * position. Returns the number of leading cases with a result (n if all). */
static size_t run_qemu(struct plan *plans, const size_t *list, size_t n, struct gresult *gres,
                       unsigned maxphyaddr, int gbpages, unsigned run_no)
{
    char blob_path[PATH_MAX + 32], out_path[PATH_MAX + 32], log_path[PATH_MAX + 32];
    char cpu[96], loader[PATH_MAX + 96], debugcon[PATH_MAX + 32];
    struct buf b = {0};
    struct qg_blob_hdr h = {QG_BLOB_MAGIC, (uint32_t)n, 0, 0};
    FILE *f;
    pid_t pid;
    int status = 0;
    size_t got = 0;
    char *line = NULL;
    size_t cap = 0;
    double last_change;
    long last_size = -1;

    buf_add(&b, &h, sizeof(h));
    for (size_t i = 0; i < n; i++)
        blob_case(&b, &plans[list[i]], (uint32_t)i);
    ((struct qg_blob_hdr *)b.p)->total_len = (uint32_t)b.len;
    if (b.len > QG_BLOB_MAX) {
        fprintf(stderr, "qemu_mmu: blob too large\n");
        exit(2);
    }
    fmt(blob_path, sizeof(blob_path), "%s/cases-%u.bin", workdir, run_no);
    fmt(out_path, sizeof(out_path), "%s/debugcon-%u.txt", workdir, run_no);
    fmt(log_path, sizeof(log_path), "%s/qemu-%u.log", workdir, run_no);
    f = fopen(blob_path, "wb");
    if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f)) {
        perror("qemu_mmu: writing the case blob");
        exit(2);
    }
    free(b.p);
    fmt(cpu, sizeof(cpu), "max,phys-bits=%u%s", maxphyaddr, gbpages ? "" : ",pdpe1gb=off");
    fmt(loader, sizeof(loader), "loader,file=%s,addr=0x%x,force-raw=on", blob_path,
             QG_BLOB_LOAD);
    fmt(debugcon, sizeof(debugcon), "file:%s", out_path);
    unlink(out_path);

    pid = fork();
    if (pid < 0) {
        perror("qemu_mmu: fork");
        exit(2);
    }
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* -smp 2 with MTTCG makes TCG run LOCK-prefixed instructions as real
         * atomic read-modify-writes, which probe the page for writing first
         * (with one vCPU, "lock or" is a load then a store, and a fault on
         * the load would have W=0 in the error code). The second vCPU is
         * never started. */
        execlp(qemu_prog, qemu_prog, "-nodefaults", "-no-user-config", "-machine", "pc",
               "-accel", "tcg,thread=multi", "-smp", "2", "-cpu", cpu, "-m", "64M", "-bios",
               bios_path, "-device", "VGA,addr=02.0", "-display", "none", "-debugcon", debugcon,
               "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-device", loader, "-no-reboot",
               (char *)NULL);
        perror("qemu_mmu: exec qemu");
        _exit(127);
    }

    {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        last_change = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    for (;;) {
        struct timespec ts, nap = {0, 5 * 1000 * 1000};
        struct stat st;
        pid_t w = waitpid(pid, &status, WNOHANG);
        double now;

        if (w == pid)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (stat(out_path, &st) == 0 && st.st_size != last_size) {
            last_size = st.st_size;
            last_change = now;
        }
        if (now - last_change > 20.0) {
            fprintf(stderr, "qemu_mmu: guest made no progress for 20 s, killing QEMU\n");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        nanosleep(&nap, NULL);
    }

    f = fopen(out_path, "r");
    if (!f) {
        fprintf(stderr, "qemu_mmu: no guest output (see %s)\n", log_path);
        FILE *lf = fopen(log_path, "r");
        if (lf) {
            char l[512];

            while (fgets(l, sizeof(l), lf))
                fprintf(stderr, "  %s", l);
            fclose(lf);
        }
        exit(2);
    }
    while (getline(&line, &cap, f) > 0) {
        char *s = line, *end;
        unsigned long idx;

        if (verbose > 1)
            fprintf(stderr, "guest: %s", line);
        if (strncmp(s, "R ", 2))
            continue;
        {
            size_t len = strlen(s);

            /* a complete line ends with " .\n" (QEMU may die mid-line) */
            if (len < 3 || strcmp(s + len - 3, " .\n"))
                continue;
        }
        s += 2;
        idx = strtoul(s, &end, 16);
        if (end == s || idx >= n)
            continue;
        s = end;
        if (parse_excursion(&s, &gres[idx].acc) < 0)
            continue;
        while (*s == ' ')
            s++;
        if (!strncmp(s, "P ", 2)) {
            s += 2;
            if (parse_excursion(&s, &gres[idx].probe) < 0)
                continue;
            gres[idx].have_probe = 1;
        }
        gres[idx].have = 1;
    }
    free(line);
    fclose(f);
    while (got < n && gres[got].have)
        got++;
    if (got < n && verbose)
        fprintf(stderr, "qemu_mmu: run %u: %zu of %zu cases done (QEMU status 0x%x)\n", run_no, got,
                n, status);
    if (!keep_dir) {
        unlink(blob_path);
        unlink(out_path);
        unlink(log_path);
    }
    return got;
}

/* ------------------------------------------------------ interpretation */

/* Byte of guest memory after the access, as the case's RAM should hold it:
 * read-back values for listed items, 0 elsewhere in RAM, and 0 outside RAM
 * (QEMU's unassigned space). */
static unsigned byte_after(const struct plan *p, const struct excursion *x, uint64_t gpa)
{
    const struct wcase *c = &p->c;
    unsigned v = 0;

    if (gpa >= WCASE_RAM_SIZE)
        return 0;
    for (unsigned i = 0; i < c->nmem; i++)
        if (gpa >= c->mem[i].gpa && gpa < c->mem[i].gpa + c->mem[i].size)
            v = (unsigned)(x->mem[i] >> (8 * (gpa - c->mem[i].gpa))) & 0xff;
    return v;
}

/* Bit 6 of the entry whose byte 0 is at @gpa, in excursion @x's read-back:
 * -1 if not listed. */
static int dbit(const struct plan *p, const struct excursion *x, uint64_t gpa)
{
    const struct wcase *c = &p->c;
    int v = -1;

    for (unsigned i = 0; i < c->nmem; i++)
        if (gpa >= c->mem[i].gpa && gpa < c->mem[i].gpa + c->mem[i].size)
            v = (int)((x->mem[i] >> (8 * (gpa - c->mem[i].gpa) + 6)) & 1);
    return v;
}

static void interpret(struct plan *p, const struct gresult *g)
{
    const struct wcase *c = &p->c;
    const struct excursion *x = &g->acc;
    struct wresult *r = &p->res;
    int success = 0;

    memset(r, 0, sizeof(*r));
    if (x->nmem != c->nmem) {
        set_skip(p, "harness: bad read-back");
        return;
    }
    r->nmem = c->nmem;
    for (unsigned i = 0; i < c->nmem; i++)
        r->memval[i] = x->mem[i];

    if (x->vec == 14 && x->cr2 == c->va) {
        r->kind = WRES_PF;
        r->ec = x->ec;
        /*
         * QEMU 7.2's walker reports a reserved-bit fault with RSVD alone
         * (mmu_translate: "do_fault_rsvd: error_code = PG_ERROR_RSVD_MASK"),
         * without P. The entry with the reserved bit was present, so P is 1
         * (SDM 4.7: P is 0 only when the fault is due to a not-present
         * entry; KVM and hardware report P|RSVD). Set it.
         */
        if (r->ec & 0x8)
            r->ec |= 0x1;
    } else if (x->vec == 13 && (p->noncanonical || (x->rip - c->va) > 16)) {
        /* #GP raised by harness code: the MOV to CR3, or the access (data
         * stub or the IRET to a fetch target) on a non-canonical address */
        r->kind = WRES_GP;
    } else if (c->acc != 'x') {
        if (x->vec != QG_VEC_DONE) {
            set_skip(p, "harness: unexpected vector 0x%x rip 0x%llx cr2 0x%llx", x->vec,
                     (unsigned long long)x->rip, (unsigned long long)x->cr2);
            return;
        }
        success = 1;
    } else if (p->plant != QG_NO_PLANT) {
        if (x->vec != 3 || x->rip != c->va + 1) {
            set_skip(p, "harness: fetch did not hit the planted int3 (vector 0x%x rip 0x%llx)",
                     x->vec, (unsigned long long)x->rip);
            return;
        }
        success = 1;
    } else if (p->unplanted_fetch) {
        /* the guest makes the first instruction fetched (00 00, add
         * %al,(%rax)) fault at va: #GP (non-canonical RAX, null DS) or #PF
         * on the unmapped scratch address (QEMU ignores a null DS) */
        if (x->rip != c->va || !(x->vec == 13 || (x->vec == 14 && x->cr2 != c->va))) {
            set_skip(p, "harness: unplanted fetch ended with vector 0x%x", x->vec);
            return;
        }
        success = 1;
    } else {
        set_skip(p, "harness: fetch executed without a known target (vector 0x%x)", x->vec);
        return;
    }

    if (success) {
        const struct pathent *leaf;
        int d;

        if (!p->leaf_ok) {
            set_skip(p, "CHECK: QEMU translated but the navigator found no leaf");
            return;
        }
        leaf = &p->path[p->leaf_idx];
        if (!g->have_probe || g->probe.vec != QG_VEC_DONE) {
            set_skip(p, "harness: D probe failed (vector 0x%x)", g->have_probe ? g->probe.vec : 0);
            return;
        }
        d = dbit(p, &g->probe, leaf->gpa);
        if (d != 1) {
            set_skip(p, "CHECK: D probe did not set D in the navigator's leaf");
            return;
        }
        for (unsigned i = 0; i < c->nmem; i++) {
            unsigned esz = c->mode == WCASE_32 ? 4 : 8;

            for (uint64_t e = c->mem[i].gpa & ~(uint64_t)(esz - 1);
                 e < c->mem[i].gpa + c->mem[i].size; e += esz) {
                if (e < c->mem[i].gpa || e == leaf->gpa)
                    continue;
                if (dbit(p, &g->probe, e) == 1) {
                    set_skip(p, "CHECK: D probe set D outside the navigator's leaf");
                    return;
                }
            }
        }
        if (c->acc == 'r' && (x->rcx & 0xff) != byte_after(p, x, p->target)) {
            set_skip(p, "CHECK: byte read 0x%02llx, expected 0x%02x at gpa 0x%llx",
                     (unsigned long long)(x->rcx & 0xff), byte_after(p, x, p->target),
                     (unsigned long long)p->target);
            return;
        }
        r->kind = WRES_OK;
        r->gpa = p->target;
        r->size_shift = p->size_shift;
    }

    /*
     * QEMU sets the accessed bit of a PS=1 PDPTE (a 1 GiB leaf) as soon as it
     * reads it, before the reserved-bit (29:13) and rights checks; the SDM
     * (4.8) sets A only in entries used for a translation, and a faulting
     * access leaves the leaf untouched (the comparison rule allows A only in
     * non-leaf entries). Undo that write on a faulting walk.
     */
    if (r->kind == WRES_PF && p->leaf_ok && p->size_shift == 30) {
        uint64_t a = p->path[p->leaf_idx].gpa;

        if (!(wcase_read_initial(c, a, 1) & 0x20))
            for (unsigned i = 0; i < c->nmem; i++)
                if (a >= c->mem[i].gpa && a < c->mem[i].gpa + c->mem[i].size)
                    r->memval[i] &= ~(0x20ull << (8 * (a - c->mem[i].gpa)));
    }

    /*
     * QEMU sets the accessed bit (bit 5) in the PAE PDPTE it walks; in PAE
     * paging that bit is reserved and the processor never writes PDPTEs
     * (SDM 4.4.1: PDPTEs are loaded into internal registers at MOV CR3).
     * Undo that write in the reported value of the PDPTE of va.
     */
    if (c->mode == WCASE_PAE) {
        uint64_t a = (c->cr3 & 0xffffffe0ull) + ((c->va >> 30) & 3) * 8;
        uint64_t before = wcase_read_initial(c, a, 1);

        if (!(before & 0x20))
            for (unsigned i = 0; i < c->nmem; i++)
                if (a >= c->mem[i].gpa && a < c->mem[i].gpa + c->mem[i].size)
                    r->memval[i] &= ~(0x20ull << (8 * (a - c->mem[i].gpa)));
    }
}

/* ---------------------------------------------------------------- main */

static void find_bios(void)
{
    char exe[PATH_MAX];
    ssize_t n;
    const char *env = getenv("QEMU_MMU_BIOS");

    if (bios_path[0])
        return;
    if (env && *env) {
        fmt(bios_path, sizeof(bios_path), "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;

        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            fmt(bios_path, sizeof(bios_path), "%s/qemu_guest.bin", exe);
            return;
        }
    }
    fmt(bios_path, sizeof(bios_path), "qemu_guest.bin");
}

static int group_key(const struct plan *p)
{
    return (int)p->c.maxphyaddr * 2 + (p->c.gbpages ? 1 : 0);
}

int main(int argc, char **argv)
{
    struct plan *plans = NULL;
    size_t nplans = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    unsigned run_no = 0;
    int qemu_ok;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) {
            verbose++;
        } else if (!strcmp(argv[i], "--bios") && i + 1 < argc) {
            fmt(bios_path, sizeof(bios_path), "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--qemu") && i + 1 < argc) {
            qemu_prog = argv[++i];
        } else if (!strcmp(argv[i], "--keep") && i + 1 < argc) {
            keep_dir = argv[++i];
        } else {
            fprintf(stderr, "usage: qemu_mmu [-v] [--bios FILE] [--qemu PROG] [--keep DIR]"
                            " < cases\n");
            return 2;
        }
    }
    find_bios();
    if (access(bios_path, R_OK)) {
        fprintf(stderr, "qemu_mmu: guest image %s not readable\n", bios_path);
        return 2;
    }

    while (getline(&line, &lcap, stdin) > 0) {
        struct plan *p;
        int rc;

        if (nplans == cap) {
            cap = cap ? cap * 2 : 1024;
            plans = realloc(plans, cap * sizeof(*plans));
            if (!plans) {
                perror("qemu_mmu: realloc");
                return 2;
            }
        }
        p = &plans[nplans];
        memset(p, 0, sizeof(*p));
        line[strcspn(line, "\n")] = '\0';
        rc = wcase_parse(line, &p->c, p->reason, sizeof(p->reason));
        if (rc == 0)
            continue;
        nplans++;
        if (rc < 0) {
            p->kind = 1;
            continue;
        }
        plan_case(p);
    }
    free(line);

    if (keep_dir) {
        fmt(workdir, sizeof(workdir), "%s", keep_dir);
        mkdir(workdir, 0755);
    } else {
        const char *tmp = getenv("TMPDIR");

        fmt(workdir, sizeof(workdir), "%s/qemu_mmu.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(workdir)) {
            perror("qemu_mmu: mkdtemp");
            return 2;
        }
    }

    {
        char cmd[PATH_MAX + 64];

        fmt(cmd, sizeof(cmd), "%s --version >/dev/null 2>&1", qemu_prog);
        qemu_ok = system(cmd) == 0;
    }

    /* groups by (MAXPHYADDR, gbpages), each one QEMU run (more after a
     * crash) */
    for (;;) {
        size_t *list, n = 0, first = SIZE_MAX;
        struct gresult *gres;
        int key;

        for (size_t i = 0; i < nplans; i++)
            if (plans[i].kind == 0 && !plans[i].done) {
                first = i;
                break;
            }
        if (first == SIZE_MAX)
            break;
        if (!qemu_ok) {
            fprintf(stderr, "qemu_mmu: %s is not available\n", qemu_prog);
            if (!keep_dir)
                rmdir(workdir);
            return 77;
        }
        key = group_key(&plans[first]);
        list = malloc(nplans * sizeof(*list));
        gres = calloc(nplans, sizeof(*gres));
        if (!list || !gres) {
            perror("qemu_mmu: malloc");
            return 2;
        }
        /* a group, at most MAX_BATCH cases per QEMU run (blob size) */
        for (size_t i = first; i < nplans && n < MAX_BATCH; i++)
            if (plans[i].kind == 0 && !plans[i].done && group_key(&plans[i]) == key)
                list[n++] = i;
        {
            size_t got = run_qemu(plans, list, n, gres, plans[first].c.maxphyaddr,
                                  plans[first].c.gbpages, run_no++);

            for (size_t j = 0; j < got; j++) {
                interpret(&plans[list[j]], &gres[j]);
                plans[list[j]].done = 1;
            }
            if (got < n) {
                set_skip(&plans[list[got]], "guest crashed or hung on this case");
                plans[list[got]].done = 1;
                if (verbose)
                    fprintf(stderr, "qemu_mmu: guest died on case line %zu\n", list[got] + 1);
            }
        }
        free(list);
        free(gres);
    }

    for (size_t i = 0; i < nplans; i++) {
        struct plan *p = &plans[i];
        char out[WCASE_LINE_MAX];

        if (p->kind == 1) {
            printf("error=%s\n", p->reason);
        } else if (p->kind == 2) {
            printf("skip=%s\n", p->reason);
        } else {
            wresult_format(&p->res, &p->c, out, sizeof(out));
            printf("%s\n", out);
        }
    }
    if (!keep_dir)
        rmdir(workdir);
    free(plans);
    return 0;
}
