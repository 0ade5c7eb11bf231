/* SPDX-License-Identifier: MIT */
/*
 * The scenario tests' guest kernel (see guest.h). Public API only.
 */
#include "guest.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define NOFLUSH (1ull << 63)

void
g_fail(struct g_kernel *k, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    print_error("FAILED [%s]: %s\n", k ? k->ctx : "", buf);
    fail();
    abort(); /* not reached */
}

static void
trace(struct g_kernel *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
trace(struct g_kernel *k, const char *fmt, ...)
{
    if (!k->trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "T ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

uint64_t
g_rand(struct g_kernel *k)
{
    uint64_t x = k->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    k->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- Addresses --------------------------------------------------------- */

/* ---- Geometry of the current mode ---- */

static bool
is64(const struct g_kernel *k)
{
    return k->levels >= 4;
}

static unsigned
shift_lk(const struct g_kernel *k, unsigned level)
{
    return 12 + (k->levels == 2 ? 10 : 9) * (level - 1);
}

static unsigned
idx_lk(const struct g_kernel *k, uint64_t va, unsigned level)
{
    return (unsigned)((va >> shift_lk(k, level)) & (k->levels == 2 ? 1023 : 511));
}

#define shift_of(level) shift_lk(k, (level))
#define idx_of(va, level) idx_lk(k, (va), (level))

/* Entries in a table of @p level (the PAE PDPT has 4). */
static unsigned
nentries(const struct g_kernel *k, unsigned level)
{
    if (k->levels == 2)
        return 1024;
    return k->levels == 3 && level == 3 ? 4 : 512;
}

/* Entries of the top-level table that belong to user space. */
static unsigned
user_top_entries(const struct g_kernel *k)
{
    return k->levels == 2 ? 768 : k->levels == 3 ? 3 : 256;
}

static bool
kernel_va(const struct g_kernel *k, uint64_t va)
{
    return is64(k) ? (va >> 63) != 0 : (va & 0xffffffffull) >= G32_DMAP;
}

/* EXEC in the rights of a walk through entries that would carry XD. */
static uint32_t
nx_exec(const struct g_kernel *k)
{
    return k->levels == 2 ? PGM_RIGHT_EXEC : 0;
}

/* XD in an entry, where the mode has it. */
static uint64_t
g_nx(const struct g_kernel *k)
{
    return k->levels >= 3 ? G_NX : 0;
}

static void
set_geometry(struct g_kernel *k, unsigned levels)
{
    k->levels = levels;
    k->esize = levels == 2 ? 4 : 8;
    k->lp_size = levels == 2 ? (4ull << 20) : (2ull << 20);
    k->lp_frames = (unsigned)(k->lp_size >> 12);
    k->huge_first = (uint32_t)(levels == 2 ? G_HUGE_FIRST32 : G_HUGE_FIRST);
}

uint64_t
g_canon(const struct g_kernel *k, uint64_t va)
{
    if (!is64(k))
        return va & 0xffffffffull;
    unsigned bits = 12 + 9 * k->levels;
    uint64_t mask = (1ull << bits) - 1;
    va &= mask;
    if (va >> (bits - 1))
        va |= ~mask;
    return va;
}

uint64_t
g_va(const struct g_kernel *k, const unsigned *idx, uint64_t off)
{
    uint64_t va = off;
    for (unsigned l = 1; l <= k->levels; l++)
        va |= (uint64_t)(idx[l] & 511) << shift_of(l);
    return g_canon(k, va);
}

uint64_t
g_dmap(const struct g_kernel *k, uint64_t gpa)
{
    if (!k->paging_on)
        return gpa; /* paging off: linear = physical */
    if (!is64(k))
        return G32_DMAP + gpa;
    return g_canon(k, ((uint64_t)G_SLOT_DMAP << shift_of(k->levels)) + gpa);
}

uint64_t
g_ktext(const struct g_kernel *k, unsigned page)
{
    if (!is64(k))
        return G32_KTEXT + (uint64_t)page * 4096;
    return g_canon(k, ((uint64_t)G_SLOT_KTEXT << shift_of(k->levels)) + (uint64_t)page * 4096);
}

uint64_t
g_ktext_huge(const struct g_kernel *k)
{
    return is64(k) ? g_ktext(k, 512) : G32_KTEXT + k->lp_size;
}

unsigned
g_selfmap_levels(const struct g_kernel *k)
{
    return k->levels == 3 ? 2 : k->levels;
}

uint64_t
g_selfmap_entry_va(const struct g_kernel *k, uint64_t va, unsigned level)
{
    if (!is64(k)) {
        /* the entry of x is at base + (x >> 12) * esize; a level up, the
         * entry of that address */
        uint64_t base = k->levels == 2 ? G32_SELF : GPAE_SELF, x = va & 0xffffffffull;
        for (unsigned l = 0; l < level; l++)
            x = base + (x >> 12) * k->esize;
        return x;
    }
    unsigned n = k->levels, idx[PGM_MAX_LEVELS + 1] = { 0 };
    for (unsigned l = 1; l <= n; l++)
        idx[l] = l > n - level ? G_SLOT_SELF : idx_of(va, l + level);
    return g_va(k, idx, (uint64_t)idx_of(va, level) * 8);
}

uint64_t
g_user_va(const struct g_kernel *k, unsigned a, unsigned b, unsigned c, unsigned d)
{
    static const unsigned tops[3] = { 0, 1, 255 };
    if (k->levels == 2) {
        /* PD index: one of three regions below 3 GiB, b picks a neighbour */
        static const unsigned pd[3] = { 1, 100, 600 };
        return ((uint64_t)(pd[a % 3] + (b & 1) * 32 + c) << 22) | ((uint64_t)(d & 1023) << 12);
    }
    if (k->levels == 3)
        return ((uint64_t)(a % 3) << 30) | ((uint64_t)(((b & 1) * 64 + c) & 511) << 21) |
               ((uint64_t)(d & 511) << 12);
    unsigned n = k->levels, idx[PGM_MAX_LEVELS + 1] = { 0 };
    idx[n] = tops[a % 3];
    for (unsigned l = 3; l < n; l++)
        idx[l] = ((b >> (n - 1 - l)) & 1) ? 5 : 0;
    idx[2] = c;
    idx[1] = d;
    return g_va(k, idx, 0);
}

/* ---- Frames ------------------------------------------------------------ */

static bool
tracked(const struct g_kernel *k, uint64_t frame)
{
    return frame < G_NFRAMES && (k->fkind[frame] == GF_DATA || k->fkind[frame] == GF_HUGE);
}

uint32_t
g_frame_alloc(struct g_kernel *k, enum g_frame_kind kind)
{
    if (!k->nfree)
        g_fail(k, "guest out of frames");
    uint32_t f = k->freelist[--k->nfree];
    if (k->fkind[f] != GF_FREE)
        g_fail(k, "frame %u on the free list is not free", f);
    k->fkind[f] = (uint8_t)kind;
    k->fref[f] = 1;
    return f;
}

void
g_frame_put(struct g_kernel *k, uint32_t frame)
{
    if (k->fkind[frame] == GF_FREE || !k->fref[frame])
        g_fail(k, "double free of frame %u", frame);
    if (--k->fref[frame])
        return;
    k->fkind[frame] = GF_FREE;
    k->freelist[k->nfree++] = frame; /* LIFO: freed frames are reused at once */
}

uint64_t
g_huge_frame(const struct g_kernel *k, unsigned chunk)
{
    return k->huge_first + (uint64_t)chunk * k->lp_frames;
}

int
g_huge_alloc(struct g_kernel *k)
{
    for (unsigned c = 0; c < G_HUGE_CHUNKS; c++) {
        if (!k->huge_used[c]) {
            k->huge_used[c] = true;
            for (unsigned i = 0; i < k->lp_frames; i++)
                k->fkind[g_huge_frame(k, c) + i] = GF_HUGE;
            return (int)c;
        }
    }
    return -1;
}

static void
huge_free(struct g_kernel *k, uint64_t first_frame)
{
    unsigned c = (unsigned)((first_frame - k->huge_first) / k->lp_frames);
    if (c >= G_HUGE_CHUNKS || !k->huge_used[c])
        g_fail(k, "bad huge free %" PRIx64, first_frame);
    k->huge_used[c] = false;
    for (unsigned i = 0; i < k->lp_frames; i++)
        k->fkind[g_huge_frame(k, c) + i] = GF_RESERVED;
}

/* ---- The checked access ------------------------------------------------ */

const uint32_t g_access_kinds[] = {
    PGM_ACCESS_USER,
    PGM_ACCESS_USER | PGM_ACCESS_WRITE,
    PGM_ACCESS_USER | PGM_ACCESS_FETCH,
    PGM_ACCESS_READ,
    PGM_ACCESS_AC,
    PGM_ACCESS_WRITE,
    PGM_ACCESS_WRITE | PGM_ACCESS_AC,
    PGM_ACCESS_FETCH,
};
const unsigned g_naccess_kinds = sizeof(g_access_kinds) / sizeof(g_access_kinds[0]);

static const char *
akind(uint32_t a)
{
    static char s[64];
    snprintf(s, sizeof(s), "%s%s%s%s", (a & PGM_ACCESS_USER) ? "user " : "sup ",
             (a & PGM_ACCESS_WRITE) ? "write" : (a & PGM_ACCESS_FETCH) ? "fetch" : "read",
             (a & PGM_ACCESS_AC) ? "+AC" : "", "");
    return s;
}

static void
phys_read(struct g_kernel *k, uint64_t gpa, void *buf, size_t len)
{
    int rc = pgm_phys_read(k->vm, gpa, buf, len);
    if (rc)
        g_fail(k, "pgm_phys_read(%#" PRIx64 ", %zu) = %d", gpa, len, rc);
}

static void
phys_write(struct g_kernel *k, uint64_t gpa, const void *buf, size_t len)
{
    int rc = pgm_phys_write(k->vm, gpa, buf, len);
    if (rc)
        g_fail(k, "pgm_phys_write(%#" PRIx64 ", %zu) = %d", gpa, len, rc);
}

static void
mirror_update(struct g_kernel *k, uint64_t gpa, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    for (size_t i = 0; i < len; i++)
        if (tracked(k, (gpa + i) >> 12))
            k->mirror[gpa + i] = b[i];
}

/* A read saw the wrong bytes: which guest frame does the engine's mapping
 * reach? (Reads the whole page again and looks for it in guest RAM.) */
static void
diagnose_page(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access)
{
    static uint8_t page[4096], cand[4096];
    struct pgm_fault_out out;
    struct pgm_soft_mmu_result mr;
    if (pgm_soft_mmu_translate(k->sb, v, va, access & ~PGM_ACCESS_NO_AD, &mr) == 0)
        fprintf(stderr, "# soft MMU now: status %d hpa %#" PRIx64 " tlb_hit %d shift %u\n",
                mr.status, mr.hpa, mr.tlb_hit, mr.page_shift);
    if (pgm_soft_access(k->vcpu[v], va & ~0xfffull, access & ~PGM_ACCESS_WRITE, page, 4096, &out) ||
        out.result != PGM_FAULT_RESUME)
        return;
    for (uint64_t f = 0; f < G_NFRAMES; f++) {
        if (pgm_phys_read(k->vm, f << 12, cand, 4096))
            continue;
        if (!memcmp(cand, page, 4096))
            fprintf(stderr, "# the engine's page for %#" PRIx64 " has the contents of gpa %#" PRIx64
                    " (kind %u)\n", va, f << 12, k->fkind[f]);
    }
}

/*
 * One access through the engine, checked against the guest walk made just
 * before it (law 1). For a write, @p buf holds the bytes; for a read or fetch
 * it receives them. @return true if the access completed; @p out holds the
 * engine's outcome.
 */
static bool
checked_access(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access, void *buf,
               size_t len, struct pgm_fault_out *out_ret)
{
    struct pgm_vcpu *vcpu = k->vcpu[v];
    struct pgm_walk w;
    int rc = pgm_walk(vcpu, va, access | PGM_ACCESS_NO_AD, &w);
    if (rc)
        g_fail(k, "pgm_walk(%#" PRIx64 ") = %d", va, rc);
    struct pgm_fault_out out;
    memset(&out, 0, sizeof(out));
    k->n_access++;
    if (k->trace && (access & PGM_ACCESS_WRITE) && len == 8)
        trace(k, "vcpu%u soft_access(%#" PRIx64 ", %#x, value %#" PRIx64 ") [gpa %#" PRIx64 "]",
              v, va, access, *(uint64_t *)buf, w.status == PGM_WALK_OK ? w.gpa : 0);
    else if (k->trace > 1 || (k->trace && (access & PGM_ACCESS_WRITE)))
        trace(k, "vcpu%u soft_access(%#" PRIx64 ", %#x, len %zu) [gpa %#" PRIx64 "]", v, va,
              access, len, w.status == PGM_WALK_OK ? w.gpa : 0);
    rc = pgm_soft_access(vcpu, va, access, buf, len, &out);
    if (rc)
        g_fail(k, "vcpu%u pgm_soft_access(%#" PRIx64 ", %s, %zu) = %d", v, va, akind(access),
               len, rc);
    if (out_ret)
        *out_ret = out;
    if (k->access_hook)
        k->access_hook(k, v, va, access,
                       w.status == PGM_WALK_OK && out.result == PGM_FAULT_RESUME, w.gpa);
    if (w.status == PGM_WALK_GP) {
        if (out.result != PGM_FAULT_INJECT || out.vector != 13)
            g_fail(k, "vcpu%u %s %#" PRIx64 ": walk says #GP, engine result %d vector %u", v,
                   akind(access), va, out.result, out.vector);
        k->n_inject++;
        return false;
    }
    if (w.status == PGM_WALK_PAGE_FAULT) {
        if (out.result != PGM_FAULT_INJECT || out.vector != 14 ||
            out.error_code != w.error_code || out.address != va)
            g_fail(k,
                   "vcpu%u %s %#" PRIx64 ": walk says #PF ec %#x (level %u), engine result %d "
                   "vector %u ec %#x addr %#" PRIx64,
                   v, akind(access), va, w.error_code, w.last_level, out.result, out.vector,
                   out.error_code, out.address);
        k->n_inject++;
        return false;
    }
    if (out.result != PGM_FAULT_RESUME)
        g_fail(k,
               "vcpu%u %s %#" PRIx64 ": walk says OK (gpa %#" PRIx64 " rights %#x), engine "
               "result %d vector %u ec %#x",
               v, akind(access), va, w.gpa, w.rights, out.result, out.vector, out.error_code);
    /* the data: read at the walked GPA now */
    uint8_t now[4096];
    phys_read(k, w.gpa, now, len);
    if (memcmp(now, buf, len)) {
        if (!(access & PGM_ACCESS_WRITE))
            diagnose_page(k, v, va, access);
        size_t i = 0;
        while (now[i] == ((uint8_t *)buf)[i])
            i++;
        g_fail(k,
               "vcpu%u %s %#" PRIx64 " (gpa %#" PRIx64 "): byte %zu is %#x through the engine, "
               "%#x at the walked GPA",
               v, akind(access), va, w.gpa, i, ((uint8_t *)buf)[i], now[i]);
    }
    if (access & PGM_ACCESS_WRITE)
        mirror_update(k, w.gpa, buf, len);
    for (size_t i = 0; i < len; i++) {
        uint64_t g = w.gpa + i;
        if (tracked(k, g >> 12) && k->mirror[g] != now[i])
            g_fail(k,
                   "vcpu%u %s %#" PRIx64 ": byte at gpa %#" PRIx64 " is %#x, the kernel "
                   "expects %#x",
                   v, akind(access), va, g, now[i], k->mirror[g]);
    }
    /* A in every entry used, D in the leaf for a write (unless the access
     * itself overwrote that entry) */
    for (unsigned l = w.top_level; l >= w.last_level && l >= 1; l--) {
        uint64_t egpa = w.entry_gpa[l];
        if ((access & PGM_ACCESS_WRITE) && egpa + k->esize > w.gpa && egpa < w.gpa + len)
            continue;
        if (k->levels == 3 && l == 3)
            continue; /* PAE PDPTEs have no A bit */
        /* a global translation may come from the TLB, cached under another
         * root: the per-root top-level entry then keeps A clear (the levels
         * below are shared by every root; with PAE the kernel PD is per root
         * too) */
        if (w.global && (k->cr4[v] & PGM_CR4_PGE) &&
            (l == w.top_level || (k->levels == 3 && l == 2)))
            continue;
        uint64_t e = 0;
        phys_read(k, egpa, &e, k->esize);
        if (!(e & G_A))
            g_fail(k, "vcpu%u %s %#" PRIx64 ": level-%u entry %#" PRIx64 " at %#" PRIx64
                      " has no A after the access",
                   v, akind(access), va, l, e, egpa);
        if (l == w.last_level && (access & PGM_ACCESS_WRITE) && !(e & G_D))
            g_fail(k, "vcpu%u write %#" PRIx64 ": leaf %#" PRIx64 " at %#" PRIx64
                      " has no D after the write",
                   v, va, e, egpa);
        if (l == 1)
            break;
    }
    return true;
}

bool
g_probe(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access)
{
    uint64_t val = 0;
    va &= ~7ull;
    if (access & PGM_ACCESS_WRITE) {
        struct pgm_walk w;
        if (pgm_walk(k->vcpu[v], va, access | PGM_ACCESS_NO_AD, &w))
            g_fail(k, "pgm_walk failed");
        if (w.status == PGM_WALK_OK && !tracked(k, w.gpa >> 12)) {
            /* not a data frame (a table, a free frame): write back what is
             * there, with the A/D bits the translation itself sets */
            phys_read(k, w.gpa, &val, 8);
            for (unsigned l = w.top_level; l >= w.last_level && l >= 1; l--) {
                uint64_t egpa = w.entry_gpa[l];
                if (egpa >= w.gpa && egpa < w.gpa + 8 && !(k->levels == 3 && l == 3))
                    val |= (G_A | (l == w.last_level ? G_D : 0)) << (8 * (egpa - w.gpa));
                if (l == 1)
                    break;
            }
        } else {
            val = ++k->write_stamp * 0x9e3779b97f4a7c15ull;
        }
    }
    return checked_access(k, v, va, access, &val, 8, NULL);
}

/* ---- Kernel memory accesses -------------------------------------------- */

static void
kaccess(struct g_kernel *k, unsigned v, uint64_t gpa, void *buf, size_t len, bool write)
{
    if (((gpa & 4095) + len) > 4096)
        g_fail(k, "kaccess crosses a page");
    if (!k->booted) {
        if (write) {
            phys_write(k, gpa, buf, len);
            mirror_update(k, gpa, buf, len);
        } else {
            phys_read(k, gpa, buf, len);
        }
        return;
    }
    struct pgm_fault_out out;
    if (!checked_access(k, v, g_dmap(k, gpa), write ? PGM_ACCESS_WRITE : PGM_ACCESS_READ, buf,
                        len, &out))
        g_fail(k, "kernel %s of gpa %#" PRIx64 " through the direct map faulted (ec %#x)",
               write ? "write" : "read", gpa, out.error_code);
}

void
g_kread(struct g_kernel *k, unsigned v, uint64_t gpa, void *buf, size_t len)
{
    kaccess(k, v, gpa, buf, len, false);
}

void
g_kwrite(struct g_kernel *k, unsigned v, uint64_t gpa, const void *buf, size_t len)
{
    uint8_t tmp[4096];
    memcpy(tmp, buf, len);
    kaccess(k, v, gpa, tmp, len, true);
}

void
g_fill_frame(struct g_kernel *k, unsigned v, uint32_t frame, uint64_t tag)
{
    uint64_t page[512];
    for (unsigned i = 0; i < 512; i++)
        page[i] = (tag * 0x100000001b3ull) ^ ((uint64_t)frame << 20) ^ i;
    g_kwrite(k, v, (uint64_t)frame << 12, page, 4096);
}

static void
zero_table(struct g_kernel *k, unsigned v, uint32_t frame)
{
    static const uint8_t zero[4096];
    g_kwrite(k, v, (uint64_t)frame << 12, zero, 4096);
}

/* ---- Page tables ------------------------------------------------------- */

static uint32_t
root_of(const struct g_kernel *k, int as)
{
    return as >= 0 ? k->as[as].root : k->init_root;
}

uint64_t
g_read_entry(struct g_kernel *k, uint64_t entry_gpa)
{
    uint64_t e = 0;
    phys_read(k, entry_gpa, &e, k->esize);
    return e;
}

uint64_t
g_entry_gpa(struct g_kernel *k, uint32_t root_frame, uint64_t va, unsigned level)
{
    uint64_t table = (uint64_t)root_frame << 12;
    for (unsigned l = k->levels; l > level; l--) {
        uint64_t e = g_read_entry(k, table + idx_of(va, l) * k->esize);
        if (!(e & G_P) || (e & G_PS))
            return 0;
        table = e & G_ADDR;
    }
    return table + idx_of(va, level) * k->esize;
}

void
g_write_entry(struct g_kernel *k, unsigned v, int as, uint64_t va, unsigned level,
              uint64_t entry_gpa, uint64_t val)
{
    k->n_table_writes++;
    if (!k->booted || k->plant_phys_write) {
        phys_write(k, entry_gpa, &val, k->esize);
        return;
    }
    /* the kernel half below the top level is shared by every root (with
     * 32-bit and PAE paging, only the kernel page tables: the kernel PDEs
     * are copied into every root); the PAE PDPT is not in the self-map */
    bool shared = is64(k) ? level < k->levels : level == 1;
    bool via_self = k->paging_on && k->use_selfmap && level <= g_selfmap_levels(k) &&
                    (as == k->cur_as[v] || (as < 0 && shared)) &&
                    (k->use_selfmap == 2 || (g_rand(k) & 3) != 0);
    uint64_t gva = via_self ? g_selfmap_entry_va(k, va, level) : g_dmap(k, entry_gpa);
    struct pgm_fault_out out;
    if (!checked_access(k, v, gva, PGM_ACCESS_WRITE, &val, k->esize, &out))
        g_fail(k, "table write through %s %#" PRIx64 " (entry gpa %#" PRIx64 ") faulted ec %#x",
               via_self ? "the self-map" : "the direct map", gva, entry_gpa, out.error_code);
    uint64_t now = g_read_entry(k, entry_gpa);
    if (now != val)
        g_fail(k, "table write through %s: entry at %#" PRIx64 " is %#" PRIx64
                  ", wrote %#" PRIx64,
               via_self ? "self-map" : "direct map", entry_gpa, now, val);
}

static uint64_t
upper_flags(const struct g_kernel *k, uint64_t va, unsigned level)
{
    if (k->levels == 3 && level == 3)
        return G_P; /* a PDPTE has no rights bits (they are reserved) */
    return kernel_va(k, va) ? (G_P | G_RW) : (G_P | G_RW | G_US);
}

static void reload_cr3_of(struct g_kernel *k, int as);

/*
 * PAE: a new PD under PDPTE @p i of @p as. The kernel PD's self-map entry
 * 508 + i maps it, and every vCPU running @p as reloads CR3: the CPU reads
 * PDPTEs only at MOV CR3.
 */
static void
pae_pd_added(struct g_kernel *k, unsigned v, int as, unsigned i, uint32_t pd)
{
    uint32_t kpd = as >= 0 ? k->as[as].kpd : k->init_kpd;
    uint64_t egpa = ((uint64_t)kpd << 12) + (GPAE_SELF_PDE + i) * 8;
    g_write_entry(k, v, as, GPAE_SELF + ((uint64_t)i << 21), 2, egpa,
                  ((uint64_t)pd << 12) | G_P | G_RW | G_NX);
    reload_cr3_of(k, as);
}

uint64_t
g_ensure_tables(struct g_kernel *k, unsigned v, int as, uint64_t va, unsigned leaf_level)
{
    uint64_t table = (uint64_t)root_of(k, as) << 12;
    for (unsigned l = k->levels; l > leaf_level; l--) {
        uint64_t egpa = table + idx_of(va, l) * k->esize;
        uint64_t e = g_read_entry(k, egpa);
        if (e & G_PS)
            g_fail(k, "ensure_tables: large page at level %u for %#" PRIx64, l, va);
        if (!(e & G_P)) {
            uint32_t f = g_frame_alloc(k, GF_TABLE);
            zero_table(k, v, f);
            e = ((uint64_t)f << 12) | upper_flags(k, va, l);
            g_write_entry(k, v, as, va, l, egpa, e);
            if (k->levels == 3 && l == 3)
                pae_pd_added(k, v, as, idx_of(va, 3), f);
        }
        table = e & G_ADDR;
    }
    return table + idx_of(va, leaf_level) * k->esize;
}

/* ---- TLB maintenance --------------------------------------------------- */

/*
 * On an EPT / NPT VM the guest's TLB instructions do not exit: the CPU
 * itself drops its linear and combined mappings (never the guest-physical
 * ones, which only libpgm's INVEPT-scope flushes drop). libpgm is still told
 * (pgm_invlpg, pgm_sync_cr3, ...), as an embedder that intercepts them would.
 */
static void
cpu_flush(struct g_kernel *k, unsigned v, enum pgm_flush_scope scope, uint64_t addr,
          uint16_t pcid)
{
    if (!k->nested)
        return;
    struct pgm_flush_req req = { .scope = scope, .addr = addr, .pcid = pcid };
    pgm_soft_mmu_guest_flush(k->sb, v, &req);
}

/* MOV CR3, or a CR0 / CR4 write: a PAE guest's PDPTEs are loaded again. */
static void
cpu_cr3_load(struct g_kernel *k, unsigned v)
{
    if (k->nested)
        pgm_soft_mmu_guest_cr3_load(k->sb, v);
}

/* The PCID vCPU @v runs with (0 without CR4.PCIDE). */
static uint16_t
cur_pcid(const struct g_kernel *k, unsigned v)
{
    if (!k->pcid_mode || k->cur_as[v] < 0)
        return 0;
    return k->as[k->cur_as[v]].pcid;
}

static void
invlpg(struct g_kernel *k, unsigned v, uint64_t va)
{
    k->n_invlpg++;
    trace(k, "vcpu%u invlpg(%#" PRIx64 ")", v, va);
    int rc = pgm_invlpg(k->vcpu[v], va);
    if (rc)
        g_fail(k, "pgm_invlpg = %d", rc);
    cpu_flush(k, v, PGM_FLUSH_GVA, va, cur_pcid(k, v));
}

static void
flush(struct g_kernel *k, unsigned v, bool global)
{
    k->n_flush++;
    trace(k, "vcpu%u flush_tlb(%d)", v, global);
    int rc = pgm_flush_tlb(k->vcpu[v], global);
    if (rc)
        g_fail(k, "pgm_flush_tlb = %d", rc);
    cpu_cr3_load(k, v); /* a MOV CR3 / CR4.PGE toggle in the model */
    if (global)
        cpu_flush(k, v, PGM_FLUSH_ALL, 0, 0);
    else if (k->cr4[v] & PGM_CR4_PCIDE)
        cpu_flush(k, v, PGM_FLUSH_PCID, 0, cur_pcid(k, v));
    else
        cpu_flush(k, v, PGM_FLUSH_NONGLOBAL, 0, 0);
}

void
g_invlpg(struct g_kernel *k, unsigned v, uint64_t va)
{
    invlpg(k, v, va);
}

void
g_flush_tlb(struct g_kernel *k, unsigned v, bool global)
{
    flush(k, v, global);
}

void
g_shootdown_page(struct g_kernel *k, int as, uint64_t va)
{
    if (k->plant_no_invlpg)
        return; /* a planted guest bug: the tests must notice the stale TLB */
    for (unsigned v = 0; v < k->nvcpu; v++) {
        if (as < 0 || k->cur_as[v] == as)
            invlpg(k, v, va);
        else if (k->pcid_mode)
            k->pcid_dirty[v][as] = true;
    }
}

/* A PDE-level change: the 2 MiB region's translations and the self-map's
 * view of the table page (the PDE used as a PTE). */
static void
shootdown_pde(struct g_kernel *k, int as, uint64_t va)
{
    if (g_rand(k) & 1) {
        g_shootdown_as(k, as);
        return;
    }
    g_shootdown_page(k, as, va);
    g_shootdown_page(k, as, g_selfmap_entry_va(k, va, 1));
}

void
g_shootdown_as(struct g_kernel *k, int as)
{
    for (unsigned v = 0; v < k->nvcpu; v++) {
        if (k->cur_as[v] == as)
            flush(k, v, false);
        else if (k->pcid_mode && as >= 0)
            k->pcid_dirty[v][as] = true;
    }
}

void
g_shootdown_all(struct g_kernel *k)
{
    for (unsigned v = 0; v < k->nvcpu; v++)
        flush(k, v, true);
    for (unsigned v = 0; v < k->nvcpu; v++)
        for (unsigned a = 0; a < G_MAX_AS; a++)
            k->pcid_dirty[v][a] = true;
}

uint64_t
g_cr3_of(const struct g_kernel *k, int as)
{
    uint64_t cr3 = (uint64_t)root_of(k, as) << 12;
    if (k->pcid_mode && as >= 0)
        cr3 |= k->as[as].pcid;
    return cr3;
}

/* MOV CR3 (same value) on every vCPU running @p as: PAE PDPTEs changed. */
static void
reload_cr3_of(struct g_kernel *k, int as)
{
    if (!k->booted || !k->paging_on)
        return;
    for (unsigned u = 0; u < k->nvcpu; u++)
        if (k->cur_as[u] == as)
            g_switch(k, u, as);
}

void
g_switch(struct g_kernel *k, unsigned v, int as)
{
    uint64_t cr3 = g_cr3_of(k, as);
    if (k->pcid_mode && as >= 0 && !k->pcid_dirty[v][as])
        cr3 |= NOFLUSH;
    k->n_cr3++;
    trace(k, "vcpu%u sync_cr3(%#" PRIx64 ") [as %d]", v, cr3, as);
    int rc = pgm_sync_cr3(k->vcpu[v], cr3);
    if (rc)
        g_fail(k, "pgm_sync_cr3(%#" PRIx64 ") = %d", cr3, rc);
    /* MOV CR3: the new PCID's (or all) non-global entries, unless NOFLUSH */
    cpu_cr3_load(k, v);
    if (!(k->cr4[v] & PGM_CR4_PCIDE))
        cpu_flush(k, v, PGM_FLUSH_NONGLOBAL, 0, 0);
    else if (!(cr3 & NOFLUSH))
        cpu_flush(k, v, PGM_FLUSH_PCID, 0, (uint16_t)(cr3 & 0xfff));
    k->cur_as[v] = as;
    if (as >= 0)
        k->pcid_dirty[v][as] = false;
}

/* ---- Lifecycle --------------------------------------------------------- */

static void
load_state(struct g_kernel *k, unsigned v, uint32_t flags)
{
    struct pgm_cpu_state st = {
        .cr0 = k->cr0[v], .cr3 = g_cr3_of(k, k->cur_as[v]), .cr4 = k->cr4[v], .efer = k->efer,
    };
    trace(k, "vcpu%u set_cpu_state(cr0 %#" PRIx64 " cr3 %#" PRIx64 " cr4 %#" PRIx64
          " efer %#" PRIx64 ", %#x)", v, st.cr0, st.cr3, st.cr4, st.efer, flags);
    int rc = pgm_set_cpu_state(k->vcpu[v], &st, flags);
    if (rc)
        g_fail(k, "pgm_set_cpu_state(cr0 %#" PRIx64 " cr4 %#" PRIx64 ") = %d", st.cr0, st.cr4,
               rc);
}

void
g_set_cr0(struct g_kernel *k, unsigned v, uint64_t cr0)
{
    bool pg = (k->cr0[v] ^ cr0) & PGM_CR0_PG;
    k->cr0[v] = cr0;
    load_state(k, v, PGM_STATE_GUEST_WRITE);
    if (pg) /* a CR0.PG change flushes everything, global entries included */
        cpu_flush(k, v, PGM_FLUSH_ALL, 0, 0);
    cpu_cr3_load(k, v);
}

void
g_set_cr4(struct g_kernel *k, unsigned v, uint64_t cr4)
{
    /* toggling PGE (or PCIDE, SMEP...) flushes: the CPU drops everything */
    k->cr4[v] = cr4;
    load_state(k, v, PGM_STATE_GUEST_WRITE);
    cpu_flush(k, v, PGM_FLUSH_ALL, 0, 0);
    cpu_cr3_load(k, v);
    for (unsigned a = 0; a < G_MAX_AS; a++)
        k->pcid_dirty[v][a] = true;
}

static uint64_t
pte_for(struct g_kernel *k, uint64_t frame, uint8_t prot, bool w, bool user)
{
    uint64_t e = (frame << 12) | G_P | (user ? G_US : 0);
    if (w)
        e |= G_RW;
    if (!(prot & G_PROT_X))
        e |= g_nx(k);
    /* sometimes the kernel presets A (and D for writable pages), as Linux does */
    uint64_t r = g_rand(k);
    if (!(r & 3))
        e |= G_A;
    if (w && !((r >> 2) & 3))
        e |= G_D;
    return e;
}

/* Frames: all free but the first MiB and the large-page chunks. */
static void
reset_frames(struct g_kernel *k)
{
    k->nfree = 0;
    for (uint32_t f = 0; f < G_NFRAMES; f++) {
        k->fkind[f] = f < G_FIRST_FRAME || f >= k->huge_first ? GF_RESERVED : GF_FREE;
        k->fref[f] = 0;
    }
    for (uint32_t f = k->huge_first; f-- > G_FIRST_FRAME;)
        k->freelist[k->nfree++] = f; /* lowest frames first */
    memset(k->huge_used, 0, sizeof(k->huge_used));
}

/* The boot tables of mode k->levels: kernel half (direct map, self-map,
 * global kernel text and a global large page). Written with pgm_phys_write
 * before the vCPUs run, else with guest stores (paging off: linear =
 * physical). */
static void
build_boot_tables(struct g_kernel *k)
{
    unsigned n = k->levels;
    uint64_t nx = g_nx(k);
    k->init_root = g_frame_alloc(k, GF_TABLE);
    zero_table(k, 0, k->init_root);
    uint64_t root = (uint64_t)k->init_root << 12;
    if (n == 2) {
        g_write_entry(k, 0, -1, G32_SELF, 2, root + 1023 * 4, root | G_P | G_RW);
    } else if (n == 3) {
        k->init_kpd = g_frame_alloc(k, GF_TABLE);
        zero_table(k, 0, k->init_kpd);
        uint64_t kpd = (uint64_t)k->init_kpd << 12;
        g_write_entry(k, 0, -1, G32_DMAP, 3, root + 3 * 8, kpd | G_P);
        g_write_entry(k, 0, -1, GPAE_SELF + (3ull << 21), 2, kpd + 511 * 8,
                      kpd | G_P | G_RW | G_NX);
    } else {
        g_write_entry(k, 0, -1, g_canon(k, (uint64_t)G_SLOT_SELF << shift_of(n)), n,
                      root + G_SLOT_SELF * 8, root | G_P | G_RW | G_NX);
    }
    /* direct map: large global supervisor pages over all of RAM */
    for (uint64_t gpa = 0; gpa < G_RAM_SIZE; gpa += k->lp_size) {
        uint64_t va = (is64(k) ? g_canon(k, (uint64_t)G_SLOT_DMAP << shift_of(n)) + gpa : G32_DMAP + gpa);
        uint64_t egpa = g_ensure_tables(k, 0, -1, va, 2);
        g_write_entry(k, 0, -1, va, 2, egpa, gpa | G_P | G_RW | G_PS | G_G | nx);
    }
    /* kernel text (RX) and data (RW, NX), global 4 KiB pages */
    for (unsigned i = 0; i < G_KTEXT_PAGES; i++) {
        k->ktext_frame[i] = g_frame_alloc(k, GF_DATA);
        g_fill_frame(k, 0, k->ktext_frame[i], 0x6b000 + i);
        uint64_t egpa = g_ensure_tables(k, 0, -1, g_ktext(k, i), 1);
        uint64_t e = ((uint64_t)k->ktext_frame[i] << 12) | G_P | G_G;
        if (i >= G_KTEXT_PAGES / 2)
            e |= G_RW | nx;
        g_write_entry(k, 0, -1, g_ktext(k, i), 1, egpa, e);
    }
    /* a global large kernel page right after */
    int c = g_huge_alloc(k);
    k->ktext_huge_frame = g_huge_frame(k, (unsigned)c);
    for (unsigned i = 0; i < k->lp_frames; i++)
        g_fill_frame(k, 0, (uint32_t)(k->ktext_huge_frame + i), 0x6c000 + i);
    {
        uint64_t va = g_ktext_huge(k);
        uint64_t egpa = g_ensure_tables(k, 0, -1, va, 2);
        uint64_t e = (k->ktext_huge_frame << 12) | G_P | G_RW | G_PS | G_G | nx;
        g_write_entry(k, 0, -1, va, 2, egpa, e);
    }
}

static uint64_t
mode_efer(const struct g_kernel *k)
{
    return k->levels >= 4 ? PGM_EFER_LME | PGM_EFER_NXE : k->levels == 3 ? PGM_EFER_NXE : 0;
}

static uint64_t
mode_cr4(const struct g_kernel *k)
{
    switch (k->levels) {
    case 0: return 0;
    case 2: return PGM_CR4_PSE | PGM_CR4_PGE;
    case 3: return PGM_CR4_PAE | PGM_CR4_PGE;
    default: return PGM_CR4_PAE | PGM_CR4_PGE | (k->levels == 5 ? PGM_CR4_LA57 : 0);
    }
}

void
g_init(struct g_kernel *k, unsigned levels, unsigned nvcpu, uint64_t seed)
{
    memset(k, 0, sizeof(*k));
    set_geometry(k, levels);
    k->nvcpu = nvcpu;
    k->rng = seed ? seed : 1;
    k->use_selfmap = 1;
    k->trace = getenv("PGM_SHADOW_TRACE") ? atoi(getenv("PGM_SHADOW_TRACE")) : 0;
    k->plant_no_invlpg = getenv("PGM_SHADOW_PLANT_NO_INVLPG") != NULL;
    k->plant_phys_write = getenv("PGM_SHADOW_PLANT_PHYS_WRITE") != NULL;
    snprintf(k->ctx, sizeof(k->ctx), "init");
    k->mirror = calloc(1, G_RAM_SIZE);
    if (!k->mirror)
        g_fail(k, "no memory for the mirror");
    if (pgm_soft_backend_create(1u << 16, &k->sb))
        g_fail(k, "soft backend");
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    /* The host paging the shadows are built for: 4-level unless
     * PGM_SHADOW_HOST says 32 or pae (legacy guests only there). */
    const char *host = getenv("PGM_SHADOW_HOST");
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    if (host && !strcmp(host, "32"))
        cfg.paging = PGM_PAGING_SHADOW_32;
    else if (host && !strcmp(host, "pae"))
        cfg.paging = PGM_PAGING_SHADOW_PAE;
    else if (host && !strcmp(host, "ept"))
        cfg.paging = PGM_PAGING_EPT; /* the nested engine, hardware-assisted paging */
    else if (host && !strcmp(host, "npt"))
        cfg.paging = PGM_PAGING_NPT;
    k->nested = cfg.paging == PGM_PAGING_EPT || cfg.paging == PGM_PAGING_NPT;
    cfg.vcpu_count = nvcpu;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = k->sb;
    int rc = pgm_vm_create(&cfg, &k->vm);
    if (rc)
        g_fail(k, "pgm_vm_create(paging %d) = %d", (int)cfg.paging, rc);
    if ((rc = pgm_phys_add_ram(k->vm, 0, G_RAM_SIZE)))
        g_fail(k, "pgm_phys_add_ram = %d", rc);
    for (unsigned v = 0; v < nvcpu; v++) {
        k->vcpu[v] = pgm_vcpu_get(k->vm, v);
        k->cur_as[v] = -1;
    }
    reset_frames(k);
    for (unsigned a = 0; a < G_MAX_AS; a++)
        k->as[a].pcid = (uint16_t)(a + 1);
    if (levels)
        build_boot_tables(k);
    k->efer = mode_efer(k);
}

void
g_boot_cpu(struct g_kernel *k, unsigned v, uint64_t extra_cr4)
{
    k->cr0[v] = PGM_CR0_PE | (k->levels ? PGM_CR0_PG | PGM_CR0_WP : 0);
    k->cr4[v] = mode_cr4(k) | extra_cr4;
    if (extra_cr4 & PGM_CR4_PCIDE)
        k->pcid_mode = true;
    k->cur_as[v] = -1;
    load_state(k, v, 0);
    k->booted = true;
    k->paging_on = k->levels != 0;
}

/* Forget every process, swap slot and frame (a reboot of the kernel). */
static void
reset_model(struct g_kernel *k)
{
    for (unsigned a = 0; a < G_MAX_AS; a++) {
        k->as[a].live = false;
        k->as[a].npages = 0;
        for (unsigned v = 0; v < k->nvcpu; v++)
            k->pcid_dirty[v][a] = true;
    }
    for (unsigned i = 0; i < G_MAX_SWAP; i++) {
        free(k->swap[i]);
        k->swap[i] = NULL;
    }
    for (unsigned v = 0; v < k->nvcpu; v++)
        k->cur_as[v] = -1;
    k->init_root = k->init_kpd = 0;
    reset_frames(k);
}

void
g_switch_mode(struct g_kernel *k, unsigned levels, uint64_t extra_cr4)
{
    /* leave the current mode, as the CPU requires: PCIDE off while in
     * IA-32e mode, then CR0.PG off, then EFER.LME off, then CR4 */
    /* (EFER is one value for all vCPUs in the model: each phase runs on
     * every vCPU before the next) */
    for (unsigned v = 0; v < k->nvcpu; v++) {
        if (k->cr4[v] & PGM_CR4_PCIDE) {
            k->cur_as[v] = -1; /* CR3[11:0] = 0 first */
            load_state(k, v, PGM_STATE_GUEST_WRITE);
            g_set_cr4(k, v, k->cr4[v] & ~PGM_CR4_PCIDE);
        }
    }
    for (unsigned v = 0; v < k->nvcpu; v++)
        if (k->cr0[v] & PGM_CR0_PG)
            g_set_cr0(k, v, k->cr0[v] & ~PGM_CR0_PG);
    k->efer = 0;
    for (unsigned v = 0; v < k->nvcpu; v++)
        load_state(k, v, PGM_STATE_GUEST_WRITE);
    for (unsigned v = 0; v < k->nvcpu; v++)
        g_set_cr4(k, v, 0);
    k->pcid_mode = false;
    k->paging_on = false;
    set_geometry(k, levels);
    reset_model(k);
    if (!levels)
        return;
    /* boot tables written with paging off, then paging on */
    build_boot_tables(k);
    k->efer = mode_efer(k);
    for (unsigned v = 0; v < k->nvcpu; v++) {
        load_state(k, v, PGM_STATE_GUEST_WRITE); /* WRMSR EFER (LME, NXE) */
        g_set_cr4(k, v, (mode_cr4(k) | extra_cr4) & ~PGM_CR4_PCIDE);
        load_state(k, v, PGM_STATE_GUEST_WRITE); /* MOV CR3 */
        g_set_cr0(k, v, k->cr0[v] | PGM_CR0_PG | PGM_CR0_WP);
        if (extra_cr4 & PGM_CR4_PCIDE) {
            g_set_cr4(k, v, k->cr4[v] | PGM_CR4_PCIDE);
            k->pcid_mode = true;
        }
    }
    k->paging_on = true;
}

void
g_fini(struct g_kernel *k)
{
    if (getenv("PGM_SHADOW_VERBOSE")) {
        for (unsigned v = 0; v < k->nvcpu; v++) {
            struct pgm_soft_mmu_stats ms;
            pgm_soft_mmu_stats(k->sb, v, &ms);
            fprintf(stderr, "# vcpu%u soft MMU: %" PRIu64 " translations, %" PRIu64
                    " TLB hits, %" PRIu64 " walks, %" PRIu64 " faults, %" PRIu64 " flushes, %"
                    PRIu64 " entries flushed\n", v, ms.translations, ms.tlb_hits, ms.walks,
                    ms.faults, ms.flushes, ms.entries_flushed);
            if (k->nested)
                fprintf(stderr, "# vcpu%u nested: %" PRIu64 " 2D walks, %" PRIu64
                        " nested faults, %" PRIu64 " entries read, %" PRIu64
                        " guest-physical cache hits\n", v, ms.nested_walks, ms.nested_faults,
                        ms.nested_refs, ms.gpa_cache_hits);
        }
        struct pgm_stats st;
        pgm_stats(k->vm, &st);
        fprintf(stderr, "# vm: %" PRIu64 " walks, %" PRIu64 " walk faults, %" PRIu64
                " cr3 loads, %" PRIu64 " A/D updates\n", st.walks, st.walk_faults, st.cr3_loads,
                st.ad_updates);
    }
    pgm_vm_destroy(k->vm);
    if (pgm_soft_backend_pages_in_use(k->sb) || pgm_soft_backend_blocks_in_use(k->sb))
        g_fail(k, "soft backend pages leaked after pgm_vm_destroy: %" PRIu64 " pages",
               pgm_soft_backend_pages_in_use(k->sb));
    pgm_soft_backend_destroy(k->sb);
    for (unsigned i = 0; i < G_MAX_SWAP; i++)
        free(k->swap[i]);
    free(k->mirror);
    k->vm = NULL;
    k->sb = NULL;
}

/* ---- Processes --------------------------------------------------------- */

int
g_as_create(struct g_kernel *k, unsigned v)
{
    int a = -1;
    for (unsigned i = 0; i < G_MAX_AS; i++) {
        if (!k->as[i].live) {
            a = (int)i;
            break;
        }
    }
    if (a < 0)
        return -1;
    struct g_as *as = &k->as[a];
    memset(as->pages, 0, sizeof(as->pages));
    as->npages = 0;
    as->live = true;
    as->root = g_frame_alloc(k, GF_TABLE);
    if (!is64(k)) {
        /* 32-bit: a PD with the boot PD's kernel entries and its own self-map
         * entry; PAE: a PDPT whose entry 3 is a copy of the boot kernel PD
         * with its own self-map entries (user PDs come when first needed) */
        uint32_t pd = as->root;
        uint32_t src = k->levels == 2 ? k->init_root : k->init_kpd;
        if (k->levels == 3) {
            as->kpd = pd = g_frame_alloc(k, GF_TABLE);
            uint64_t pdpt[512] = { 0 };
            pdpt[3] = ((uint64_t)pd << 12) | G_P;
            g_kwrite(k, v, (uint64_t)as->root << 12, pdpt, 4096);
        }
        uint8_t t[4096];
        g_kread(k, v, (uint64_t)src << 12, t, 4096);
        if (k->levels == 2) {
            uint32_t *e = (uint32_t *)t;
            for (unsigned i = 0; i < 1024; i++)
                e[i] = i < 768 ? 0 : e[i] & ~(uint32_t)(G_A | G_D);
            e[1023] = (uint32_t)(pd << 12) | (uint32_t)(G_P | G_RW);
        } else {
            uint64_t *e = (uint64_t *)t;
            for (unsigned i = 0; i < 512; i++)
                e[i] &= ~(G_A | G_D);
            for (unsigned i = 0; i < 3; i++)
                e[GPAE_SELF_PDE + i] = 0;
            e[511] = ((uint64_t)pd << 12) | G_P | G_RW | G_NX;
        }
        g_kwrite(k, v, (uint64_t)pd << 12, t, 4096);
        for (unsigned i = 0; i < k->nvcpu; i++)
            k->pcid_dirty[i][a] = true;
        return a;
    }
    /* the kernel copies the kernel half of the boot root, then its self-map */
    uint64_t top[512];
    g_kread(k, v, (uint64_t)k->init_root << 12, top, 4096);
    for (unsigned i = 0; i < 256; i++)
        top[i] = 0;
    for (unsigned i = 256; i < 512; i++)
        top[i] &= ~(G_A | G_D);
    top[G_SLOT_SELF] = ((uint64_t)as->root << 12) | G_P | G_RW | G_NX;
    g_kwrite(k, v, (uint64_t)as->root << 12, top, 4096);
    for (unsigned i = 0; i < k->nvcpu; i++)
        k->pcid_dirty[i][a] = true; /* a PCID reused: flush it at the first load */
    return a;
}

/* A table's entries, widened to 64 bits. */
static void
read_table(struct g_kernel *k, uint64_t table, uint64_t *t)
{
    uint8_t raw[4096];
    phys_read(k, table, raw, 4096);
    for (unsigned i = 0; i < 4096 / k->esize; i++) {
        t[i] = 0;
        memcpy(&t[i], raw + i * k->esize, k->esize);
    }
}

static void
free_user_tables(struct g_kernel *k, uint64_t table, unsigned level)
{
    uint64_t t[1024];
    read_table(k, table, t);
    unsigned n = level == k->levels ? user_top_entries(k) : nentries(k, level);
    for (unsigned i = 0; i < n; i++) {
        if (!(t[i] & G_P) || (t[i] & G_PS) || level == 1)
            continue;
        if (level > 2)
            free_user_tables(k, t[i] & G_ADDR, level - 1);
        g_frame_put(k, (uint32_t)((t[i] & G_ADDR) >> 12));
    }
}

static void
page_remove(struct g_as *as, struct g_page *p)
{
    *p = as->pages[--as->npages];
    memset(&as->pages[as->npages], 0, sizeof(*p));
}

static void
release_page(struct g_kernel *k, struct g_page *p)
{
    if (p->state == GP_PRESENT) {
        if (p->large)
            huge_free(k, p->frame);
        else
            g_frame_put(k, p->frame);
    } else if (p->state == GP_SWAPPED) {
        free(k->swap[p->swap_slot]);
        k->swap[p->swap_slot] = NULL;
    }
}

void
g_as_destroy(struct g_kernel *k, unsigned v, int a)
{
    (void)v;
    struct g_as *as = &k->as[a];
    for (unsigned i = 0; i < k->nvcpu; i++)
        if (k->cur_as[i] == a)
            g_fail(k, "destroying a loaded address space");
    /* split large pages: their page tables go with the tables below */
    for (unsigned i = 0; i < as->npages; i++)
        release_page(k, &as->pages[i]);
    as->npages = 0;
    free_user_tables(k, (uint64_t)as->root << 12, k->levels);
    g_frame_put(k, as->root);
    if (k->levels == 3)
        g_frame_put(k, as->kpd);
    as->live = false;
    for (unsigned i = 0; i < k->nvcpu; i++)
        k->pcid_dirty[i][a] = true;
}

struct g_page *
g_find(struct g_kernel *k, int a, uint64_t va)
{
    struct g_as *as = &k->as[a];
    for (unsigned i = 0; i < as->npages; i++) {
        struct g_page *p = &as->pages[i];
        uint64_t size = p->large ? k->lp_size : 4096;
        if (va >= p->va && va < p->va + size)
            return p;
    }
    return NULL;
}

static struct g_page *
page_new(struct g_kernel *k, int a, uint64_t va)
{
    struct g_as *as = &k->as[a];
    if (as->npages >= G_MAX_PAGES || g_find(k, a, va))
        return NULL;
    struct g_page *p = &as->pages[as->npages++];
    memset(p, 0, sizeof(*p));
    p->va = va;
    return p;
}

static int
swap_alloc(struct g_kernel *k)
{
    for (unsigned i = 0; i < G_MAX_SWAP; i++)
        if (!k->swap[i]) {
            k->swap[i] = malloc(4096);
            return (int)i;
        }
    return -1;
}

static uint64_t
swap_pte(uint32_t slot)
{
    return ((uint64_t)(slot + 1) << 12) | 0x2; /* P = 0: a swap entry */
}

int
g_fork(struct g_kernel *k, unsigned v, int parent)
{
    int c = g_as_create(k, v);
    if (c < 0)
        return -1;
    struct g_as *pa = &k->as[parent];
    bool parent_changed = false;
    for (unsigned i = 0; i < pa->npages; i++) {
        struct g_page *p = &pa->pages[i];
        if (p->large)
            continue; /* large mappings are not inherited (MADV_DONTFORK) */
        struct g_page *q = page_new(k, c, p->va);
        *q = *p;
        if (p->state == GP_PRESENT) {
            k->fref[p->frame]++;
            if (p->pte_w) {
                /* copy-on-write: both read-only */
                uint64_t egpa = g_entry_gpa(k, pa->root, p->va, 1);
                uint64_t e = g_read_entry(k, egpa) & ~G_RW;
                g_write_entry(k, v, parent, p->va, 1, egpa, e);
                p->pte_w = q->pte_w = false;
                parent_changed = true;
            }
            uint64_t cgpa = g_ensure_tables(k, v, c, q->va, 1);
            uint64_t e = pte_for(k, q->frame, q->prot, false, true);
            g_write_entry(k, v, c, q->va, 1, cgpa, e);
        } else if (p->state == GP_SWAPPED) {
            int s = swap_alloc(k);
            if (s < 0) {
                g_fail(k, "swap full");
            }
            memcpy(k->swap[s], k->swap[p->swap_slot], 4096);
            q->swap_slot = (uint32_t)s;
            uint64_t cgpa = g_ensure_tables(k, v, c, q->va, 1);
            g_write_entry(k, v, c, q->va, 1, cgpa, swap_pte((uint32_t)s));
        }
        /* GP_LAZY: nothing in the tables */
    }
    if (parent_changed)
        g_shootdown_as(k, parent); /* Linux flushes the parent mm after copying */
    return c;
}

/* ---- Memory management ------------------------------------------------- */

static void
map_fresh(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    uint32_t f = g_frame_alloc(k, GF_DATA);
    g_fill_frame(k, v, f, g_rand(k));
    p->frame = f;
    p->state = GP_PRESENT;
    p->pte_w = (p->prot & G_PROT_W) != 0;
    uint64_t egpa = g_ensure_tables(k, v, a, p->va, 1);
    /* not present -> present: no INVLPG needed (SDM 4.10.4.3) */
    g_write_entry(k, v, a, p->va, 1, egpa, pte_for(k, f, p->prot, p->pte_w, true));
}

struct g_page *
g_mmap(struct g_kernel *k, unsigned v, int a, uint64_t va, uint8_t prot, bool populate)
{
    struct g_page *p = page_new(k, a, va);
    if (!p)
        return NULL;
    p->prot = prot;
    p->state = GP_LAZY;
    if (populate)
        map_fresh(k, v, a, p);
    return p;
}

struct g_page *
g_mmap_large(struct g_kernel *k, unsigned v, int a, uint64_t va, uint8_t prot)
{
    if (g_entry_gpa(k, k->as[a].root, va, 2) &&
        (g_read_entry(k, g_entry_gpa(k, k->as[a].root, va, 2)) & G_P))
        return NULL; /* a page table already lives there */
    struct g_page *p = page_new(k, a, va);
    if (!p)
        return NULL;
    int c = g_huge_alloc(k);
    if (c < 0) {
        page_remove(&k->as[a], p);
        return NULL;
    }
    p->large = true;
    p->prot = prot;
    p->state = GP_PRESENT;
    p->frame = (uint32_t)g_huge_frame(k, (unsigned)c);
    p->pte_w = (prot & G_PROT_W) != 0;
    for (unsigned i = 0; i < k->lp_frames; i++)
        g_fill_frame(k, v, p->frame + i, g_rand(k));
    uint64_t egpa = g_ensure_tables(k, v, a, va, 2);
    uint64_t e = pte_for(k, p->frame, prot, p->pte_w, true) | G_PS;
    g_write_entry(k, v, a, va, 2, egpa, e);
    return p;
}

void
g_munmap(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    struct g_as *as = &k->as[a];
    if (p->large) {
        uint64_t egpa = g_entry_gpa(k, as->root, p->va, 2);
        uint64_t pde = g_read_entry(k, egpa);
        g_write_entry(k, v, a, p->va, 2, egpa, 0);
        if (p->split) {
            g_shootdown_as(k, a);
            g_frame_put(k, (uint32_t)((pde & G_ADDR) >> 12));
        } else {
            shootdown_pde(k, a, p->va);
        }
    } else if (p->state == GP_PRESENT || p->state == GP_SWAPPED) {
        uint64_t egpa = g_entry_gpa(k, as->root, p->va, 1);
        g_write_entry(k, v, a, p->va, 1, egpa, 0);
        if (p->state == GP_PRESENT)
            g_shootdown_page(k, a, p->va);
    }
    release_page(k, p);
    page_remove(as, p);
}

void
g_mprotect(struct g_kernel *k, unsigned v, int a, struct g_page *p, uint8_t prot)
{
    struct g_as *as = &k->as[a];
    p->prot = prot;
    if (p->state != GP_PRESENT)
        return;
    if (p->large && p->split) {
        /* rewrite the whole page table in one store (rep movs) */
        uint64_t pde = g_read_entry(k, g_entry_gpa(k, as->root, p->va, 2));
        uint8_t pt[4096];
        p->pte_w = (prot & G_PROT_W) != 0;
        for (unsigned i = 0; i < k->lp_frames; i++) {
            bool w = p->pte_w && !(p->split_ro[i / 64] >> (i % 64) & 1);
            uint64_t e = pte_for(k, p->frame + i, prot, w, true);
            memcpy(pt + i * k->esize, &e, k->esize);
        }
        g_kwrite(k, v, pde & G_ADDR, pt, 4096);
        g_shootdown_as(k, a);
        return;
    }
    unsigned level = p->large ? 2 : 1;
    uint64_t egpa = g_entry_gpa(k, as->root, p->va, level);
    uint64_t e = g_read_entry(k, egpa);
    bool w = (prot & G_PROT_W) && (p->large || k->fref[p->frame] == 1);
    p->pte_w = w;
    e = (e & ~(G_RW | G_NX)) | (w ? G_RW : 0) | ((prot & G_PROT_X) ? 0 : g_nx(k));
    g_write_entry(k, v, a, p->va, level, egpa, e);
    if (p->large)
        shootdown_pde(k, a, p->va);
    else
        g_shootdown_page(k, a, p->va);
}

void
g_swap_out(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    if (p->state != GP_PRESENT || p->large || k->fref[p->frame] != 1)
        return;
    int s = swap_alloc(k);
    if (s < 0)
        return;
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 1);
    g_write_entry(k, v, a, p->va, 1, egpa, swap_pte((uint32_t)s));
    g_shootdown_page(k, a, p->va);
    /* the contents go to the swap device after the unmap is flushed */
    g_kread(k, v, (uint64_t)p->frame << 12, k->swap[s], 4096);
    if (memcmp(k->swap[s], k->mirror + ((uint64_t)p->frame << 12), 4096))
        g_fail(k, "swap-out of %#" PRIx64 ": frame contents differ from the kernel's", p->va);
    g_frame_put(k, p->frame);
    p->state = GP_SWAPPED;
    p->swap_slot = (uint32_t)s;
    p->frame = 0;
}

static void
swap_in(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    uint32_t f = g_frame_alloc(k, GF_DATA);
    g_kwrite(k, v, (uint64_t)f << 12, k->swap[p->swap_slot], 4096);
    free(k->swap[p->swap_slot]);
    k->swap[p->swap_slot] = NULL;
    p->frame = f;
    p->state = GP_PRESENT;
    p->pte_w = (p->prot & G_PROT_W) != 0;
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 1);
    g_write_entry(k, v, a, p->va, 1, egpa, pte_for(k, f, p->prot, p->pte_w, true));
}

void
g_age(struct g_kernel *k, unsigned v, int a, struct g_page *p, bool clean)
{
    if (p->state != GP_PRESENT || p->large)
        return;
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 1);
    uint64_t e = g_read_entry(k, egpa) & ~(G_A | (clean ? G_D : 0));
    g_write_entry(k, v, a, p->va, 1, egpa, e);
    g_shootdown_page(k, a, p->va);
}

void
g_split_large(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    if (!p->large || p->split)
        return;
    uint32_t pt = g_frame_alloc(k, GF_TABLE);
    uint8_t t[4096];
    for (unsigned i = 0; i < k->lp_frames; i++) {
        uint64_t e = pte_for(k, p->frame + i, p->prot, p->pte_w, true);
        memcpy(t + i * k->esize, &e, k->esize);
    }
    g_kwrite(k, v, (uint64_t)pt << 12, t, 4096);
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 2);
    g_write_entry(k, v, a, p->va, 2, egpa, ((uint64_t)pt << 12) | upper_flags(k, p->va, 2));
    g_shootdown_as(k, a); /* the page size changed: INVLPG of one page is not enough */
    p->split = true;
    memset(p->split_ro, 0, sizeof(p->split_ro));
}

void
g_merge_large(struct g_kernel *k, unsigned v, int a, struct g_page *p)
{
    if (!p->large || !p->split)
        return;
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 2);
    uint64_t pde = g_read_entry(k, egpa);
    bool w = p->pte_w;
    for (unsigned i = 0; i < 16; i++)
        if (p->split_ro[i])
            w = false;
    p->pte_w = w;
    g_write_entry(k, v, a, p->va, 2, egpa, pte_for(k, p->frame, p->prot, w, true) | G_PS);
    g_shootdown_as(k, a);
    g_frame_put(k, (uint32_t)((pde & G_ADDR) >> 12));
    p->split = false;
    memset(p->split_ro, 0, sizeof(p->split_ro));
}

void
g_split_protect_sub(struct g_kernel *k, unsigned v, int a, struct g_page *p, unsigned sub)
{
    if (!p->large || !p->split)
        return;
    uint64_t va = p->va + (uint64_t)sub * 4096;
    uint64_t egpa = g_entry_gpa(k, k->as[a].root, va, 1);
    uint64_t e = g_read_entry(k, egpa) & ~G_RW;
    g_write_entry(k, v, a, va, 1, egpa, e);
    g_shootdown_page(k, a, va);
    p->split_ro[sub / 64] |= 1ull << (sub % 64);
}

bool
g_free_empty_pt(struct g_kernel *k, unsigned v, int a, uint64_t va)
{
    struct g_as *as = &k->as[a];
    uint64_t base = va & ~(k->lp_size - 1);
    for (unsigned i = 0; i < as->npages; i++)
        if (as->pages[i].va >= base && as->pages[i].va < base + k->lp_size)
            return false;
    uint64_t egpa = g_entry_gpa(k, as->root, base, 2);
    if (!egpa)
        return false;
    uint64_t pde = g_read_entry(k, egpa);
    if (!(pde & G_P) || (pde & G_PS))
        return false;
    g_write_entry(k, v, a, base, 2, egpa, 0);
    shootdown_pde(k, a, base);
    g_frame_put(k, (uint32_t)((pde & G_ADDR) >> 12));
    return true;
}

void
g_ktext_remap(struct g_kernel *k, unsigned v, unsigned page, bool via_pge)
{
    uint32_t old = k->ktext_frame[page];
    uint32_t f = g_frame_alloc(k, GF_DATA);
    g_fill_frame(k, v, f, g_rand(k));
    uint64_t va = g_ktext(k, page);
    uint64_t egpa = g_entry_gpa(k, k->init_root, va, 1);
    uint64_t e = (g_read_entry(k, egpa) & ~G_ADDR) | ((uint64_t)f << 12);
    g_write_entry(k, v, -1, va, 1, egpa, e);
    if (via_pge) {
        for (unsigned i = 0; i < k->nvcpu; i++) {
            g_set_cr4(k, i, k->cr4[i] & ~PGM_CR4_PGE);
            g_set_cr4(k, i, k->cr4[i] | PGM_CR4_PGE);
        }
    } else {
        g_shootdown_page(k, -1, va);
    }
    k->ktext_frame[page] = f;
    g_frame_put(k, old);
}

/* ---- Programs ---------------------------------------------------------- */

bool
g_program_access(struct g_kernel *k, unsigned v, uint64_t va, uint32_t access)
{
    int a = k->cur_as[v];
    for (unsigned tries = 0; tries < 4; tries++) {
        struct pgm_fault_out out;
        uint64_t val = (access & PGM_ACCESS_WRITE) ? ++k->write_stamp * 0x9e3779b97f4a7c15ull : 0;
        if (checked_access(k, v, va & ~7ull, access, &val, 8, &out))
            return true;
        /* the kernel's #PF handler */
        struct g_page *p = a >= 0 ? g_find(k, a, va) : NULL;
        if (!p || out.vector != 14)
            return false;
        uint32_t ec = out.error_code;
        if (!(ec & PGM_PFEC_P)) {
            if (p->state == GP_LAZY)
                map_fresh(k, v, a, p);
            else if (p->state == GP_SWAPPED)
                swap_in(k, v, a, p);
            else
                return false;
            k->n_faults_fixed++;
            continue;
        }
        if ((ec & PGM_PFEC_W) && !(ec & PGM_PFEC_RSVD) && p->state == GP_PRESENT &&
            !p->large && (p->prot & G_PROT_W) && !p->pte_w) {
            /* copy-on-write */
            uint64_t egpa = g_entry_gpa(k, k->as[a].root, p->va, 1);
            uint64_t e = g_read_entry(k, egpa);
            if (k->fref[p->frame] > 1) {
                uint32_t f = g_frame_alloc(k, GF_DATA);
                uint8_t buf[4096];
                g_kread(k, v, (uint64_t)p->frame << 12, buf, 4096);
                g_kwrite(k, v, (uint64_t)f << 12, buf, 4096);
                g_frame_put(k, p->frame);
                p->frame = f;
                e = (e & ~G_ADDR) | ((uint64_t)f << 12);
            }
            p->pte_w = true;
            g_write_entry(k, v, a, p->va, 1, egpa, e | G_RW);
            g_shootdown_page(k, a, p->va);
            k->n_faults_fixed++;
            continue;
        }
        return false;
    }
    g_fail(k, "program access %#" PRIx64 " still faults after the kernel fixed it", va);
}

/* ---- Checks ------------------------------------------------------------ */

void
g_audit(struct g_kernel *k)
{
    char msg[512] = "";
    int rc = pgm_audit(k->vm, msg, sizeof(msg));
    if (rc)
        g_fail(k, "pgm_audit = %d: %s", rc, msg);
}

static void
expect_walk(struct g_kernel *k, unsigned v, uint64_t va, bool present, uint64_t gpa,
            uint32_t rights, const char *what)
{
    struct pgm_walk w;
    uint32_t acc = (rights & PGM_RIGHT_USER) ? PGM_ACCESS_USER : 0;
    if (pgm_walk(k->vcpu[v], va, acc | PGM_ACCESS_NO_AD, &w))
        g_fail(k, "pgm_walk failed");
    if (!present) {
        if (w.status != PGM_WALK_PAGE_FAULT || (w.error_code & PGM_PFEC_P))
            g_fail(k, "model: %s %#" PRIx64 " is not mapped, the guest walk says status %d "
                      "gpa %#" PRIx64,
                   what, va, w.status, w.gpa);
        return;
    }
    if (w.status != PGM_WALK_OK || w.gpa != gpa || w.rights != rights)
        g_fail(k, "model: %s %#" PRIx64 " -> gpa %#" PRIx64 " rights %#x; the guest walk says "
                  "status %d ec %#x gpa %#" PRIx64 " rights %#x",
               what, va, gpa, rights, w.status, w.error_code, w.gpa, w.rights);
}

static uint32_t
rights_of(const struct g_kernel *k, uint8_t prot, bool w, bool user)
{
    return (w ? PGM_RIGHT_WRITE : 0) | (user ? PGM_RIGHT_USER : 0) |
           ((prot & G_PROT_X) ? PGM_RIGHT_EXEC : nx_exec(k));
}

/* Model vs walk for one page of the current address space; returns a probe address. */
static uint64_t
check_page_model(struct g_kernel *k, unsigned v, struct g_page *p)
{
    uint64_t off = (g_rand(k) & 0x1ff) * 8;
    if (!p->large) {
        uint64_t gpa = ((uint64_t)p->frame << 12) + off;
        expect_walk(k, v, p->va + off, p->state == GP_PRESENT, gpa,
                    rights_of(k, p->prot, p->pte_w, true), "user page");
        return p->va + off;
    }
    unsigned sub = (unsigned)(g_rand(k) % k->lp_frames);
    uint64_t va = p->va + (uint64_t)sub * 4096 + off;
    bool w = p->pte_w && !(p->split && (p->split_ro[sub / 64] >> (sub % 64) & 1));
    expect_walk(k, v, va, true, ((uint64_t)p->frame << 12) + (uint64_t)sub * 4096 + off,
                rights_of(k, p->prot, w, true), "large page");
    return va;
}

static void
probe_all_kinds(struct g_kernel *k, unsigned v, uint64_t va, bool full)
{
    if (full) {
        for (unsigned i = 0; i < g_naccess_kinds; i++)
            g_probe(k, v, va, g_access_kinds[i]);
    } else {
        for (unsigned i = 0; i < 2; i++)
            g_probe(k, v, va, g_access_kinds[g_rand(k) % g_naccess_kinds]);
    }
}

/* GPA of the self-map entry of the tables @p a runs on. */
static uint64_t
self_entry_gpa(const struct g_kernel *k, int a)
{
    switch (k->levels) {
    case 2: return ((uint64_t)root_of(k, a) << 12) + 1023 * 4;
    case 3: return ((uint64_t)(a >= 0 ? k->as[a].kpd : k->init_kpd) << 12) + 511 * 8;
    default: return ((uint64_t)root_of(k, a) << 12) + 8 * G_SLOT_SELF;
    }
}

/* Paging off: linear = physical for every access kind, over RAM (tables,
 * data and free frames) and unassigned space. */
static void
check_paging_off(struct g_kernel *k, unsigned v, unsigned full)
{
    for (unsigned i = 0; i < (full ? 8u : 3u); i++) {
        uint64_t gpa = (G_FIRST_FRAME + g_rand(k) % (G_NFRAMES - G_FIRST_FRAME)) * 4096 +
                       (g_rand(k) & 0xff8);
        expect_walk(k, v, gpa, true, gpa, PGM_RIGHT_WRITE | PGM_RIGHT_USER | PGM_RIGHT_EXEC,
                    "paging off");
        probe_all_kinds(k, v, gpa, full);
    }
}

void
g_check(struct g_kernel *k, unsigned full)
{
    for (unsigned v = 0; v < k->nvcpu; v++) {
        int a = k->cur_as[v];
        if (!k->paging_on) {
            check_paging_off(k, v, full);
            continue;
        }
        /* kernel pages: model vs walk, and probes */
        for (unsigned i = 0; i < G_KTEXT_PAGES; i++) {
            bool rw = i >= G_KTEXT_PAGES / 2;
            uint64_t va = g_ktext(k, i) + 8 * (i + 1);
            expect_walk(k, v, va, true, ((uint64_t)k->ktext_frame[i] << 12) + 8 * (i + 1),
                        rw ? PGM_RIGHT_WRITE | nx_exec(k) : PGM_RIGHT_EXEC, "kernel text");
            if (full || (g_rand(k) & 7) == 0)
                probe_all_kinds(k, v, va, full);
        }
        {
            uint64_t off = (g_rand(k) % k->lp_frames) * 4096 + 64;
            uint64_t va = g_ktext_huge(k) + off;
            expect_walk(k, v, va, true, (k->ktext_huge_frame << 12) + off,
                        PGM_RIGHT_WRITE | nx_exec(k), "kernel large page");
            probe_all_kinds(k, v, va, full);
        }
        /* the direct map: random frames (tables and data) */
        for (unsigned i = 0; i < (full ? 6u : 2u); i++) {
            uint64_t gpa = (G_FIRST_FRAME + g_rand(k) % (G_NFRAMES - G_FIRST_FRAME)) * 4096 +
                           (g_rand(k) & 0xff8);
            expect_walk(k, v, g_dmap(k, gpa), true, gpa, PGM_RIGHT_WRITE | nx_exec(k),
                        "direct map");
            probe_all_kinds(k, v, g_dmap(k, gpa), full);
        }
        /* the root through the direct map and through the self-map */
        probe_all_kinds(k, v, g_dmap(k, self_entry_gpa(k, a)), full);
        if (k->levels == 3) /* the PDPT (latched: a write there changes nothing yet) */
            probe_all_kinds(k, v, g_dmap(k, (uint64_t)root_of(k, a) << 12), full);
        /* a non-canonical address (4-level) / a far one (5-level) */
        probe_all_kinds(k, v, 0x0080000000000000ull | 0x1000, false);
        if (a < 0)
            continue;
        struct g_as *as = &k->as[a];
        for (unsigned i = 0; i < as->npages; i++) {
            struct g_page *p = &as->pages[i];
            bool probe = full || (g_rand(k) % (as->npages / 6 + 1)) == 0;
            uint64_t va = check_page_model(k, v, p);
            if (probe)
                probe_all_kinds(k, v, va, full);
            if (probe && p->state == GP_PRESENT) {
                /* the tables above it, seen through the self-map */
                unsigned l = p->large ? 2 : 1;
                l += (unsigned)(g_rand(k) % (g_selfmap_levels(k) - l + 1));
                uint64_t sva = g_selfmap_entry_va(k, p->va, l);
                uint64_t egpa = g_entry_gpa(k, as->root, p->va, l);
                expect_walk(k, v, sva, true, egpa, PGM_RIGHT_WRITE | nx_exec(k),
                            "self-map");
                probe_all_kinds(k, v, sva, full);
                /* and the data frame through the direct map */
                probe_all_kinds(k, v, g_dmap(k, (uint64_t)p->frame << 12) + 16, false);
            }
        }
        /* unmapped user addresses */
        for (unsigned i = 0; i < 2; i++) {
            uint64_t r = g_rand(k);
            uint64_t va = g_user_va(k, (unsigned)r, (unsigned)(r >> 8), (unsigned)(r >> 16) % 4,
                                    (unsigned)(r >> 24) % 32);
            if (!g_find(k, a, va)) {
                expect_walk(k, v, va, false, 0, 0, "unmapped");
                probe_all_kinds(k, v, va, false);
            }
        }
    }
    g_audit(k);
}

void
g_check_memory(struct g_kernel *k)
{
    uint8_t buf[4096];
    for (uint64_t f = G_FIRST_FRAME; f < G_NFRAMES; f++) {
        if (!tracked(k, f))
            continue;
        phys_read(k, f << 12, buf, 4096);
        if (memcmp(buf, k->mirror + (f << 12), 4096)) {
            unsigned i = 0;
            while (buf[i] == k->mirror[(f << 12) + i])
                i++;
            g_fail(k, "memory: gpa %#" PRIx64 " holds %#x, the kernel wrote %#x", (f << 12) + i,
                   buf[i], k->mirror[(f << 12) + i]);
        }
    }
}
