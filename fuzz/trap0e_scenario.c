/* SPDX-License-Identifier: MIT */
/*
 * trap0e scenario: random guest tables and operation sequences run through
 * the shadow engine (PGM_PAGING_SHADOW_AMD64), or the nested engine, on the
 * soft backend, whose
 * MMU is the CPU, in every guest mode (IA-32e 4/5-level, PAE, 32-bit,
 * protected and real mode without paging) with changes among them.
 * Shared by fuzz_trap0e and fuzz_alloc.
 *
 * ---- Input layout (short inputs are padded with zeros) -------------------
 *   0      control bits: 0 LA57, 1 CR0.WP, 2 SMEP, 3 SMAP, 4 PKE, 5 EFER.NXE,
 *          6 PGE, 7 self-map entry user-accessible
 *   1..4   PKRU
 *   5      bits 1:0 pool size (floor = 72 pages, 96, 160, default 2048);
 *          bits 3:2 flood threshold (default, 1, 2, 8); bits 5:4 when the
 *          initial mode (byte 15) is not IA-32e: host paging 4-level, PAE,
 *          32-bit, 4-level (an IA-32e state is then loaded, checked to give
 *          -EOPNOTSUPP, and the previous state restored); bits 7:6: 1 EPT,
 *          2 NPT - the nested engine in every mode, the guest's TLB
 *          maintenance made by the soft MMU itself (env TRAP0E_NESTED=1|2
 *          forces it for every input)
 *   6      self-map slot in every root: 256 + byte (510 if that gives 511)
 *   7..10  seed of the base tables
 *   11     number of table records (mod 32)
 *   12..13 fuzz_alloc: index of the VM allocation that fails
 *   14     fuzz_alloc: bit 0 every allocation from that index on fails (else
 *          only that one); bits 7:1 soft-backend allocations before failure
 *          (127: none fail)
 *   15     initial mode, which also picks the format of the base tables:
 *          bits 1:0 IA-32e (byte 0 bit 0: LA57), 32-bit paging (byte 0
 *          bit 0: CR4.PSE), PAE, paging off (IA-32e tables; bit 2: real
 *          mode, else protected). Old inputs (0) keep their meaning.
 *   16..   table records, 12 bytes each: page (1, mod 64), index (2, mod 512),
 *          steer (1), value (8); with steer bit 0 the value's address bits
 *          are replaced by page (steer >> 1) % 64, so most point into RAM
 *   then   operations (below) to the end of the input, at most 64
 *
 * Guest memory: 64 pages of RAM at GPA 0, one MMIO page without handler
 * right above (reads all-ones, writes dropped). The base tables come from the
 * seed: roots (top-level tables) in pages 0-3, then tables of each lower
 * level down to page tables in pages 12-27, data pages 28-63 (each 8-byte
 * word holds its own GPA, xored with a constant). Each table has entries at
 * indexes 0, 1, 2 and 511 pointing one level down (now and then a large page
 * at GPA 0, which maps the tables themselves and unassigned space above
 * RAM, or a PTE aliasing a table page), mostly P|RW|US with some read-only,
 * supervisor, XD, G, A/D and protection-key variants. Every root maps
 * itself at the self-map slot, so the guest reaches its own entries through
 * linear addresses. The records then overwrite any entry with any value.
 * 32-bit format: PDs in pages 0-3 (4-byte entries at 0, 1, 2, 1023; a
 * 4 MiB page at GPA 0 now and then, sometimes with PSE-36 address bits or
 * the reserved bit 21), page tables in 12-27, the self-map at PDE
 * 512 + 2 * byte 6. PAE format: PDPTs in pages 0-3 (4 entries, now and then
 * with a reserved bit: MOV CR3 then raises #GP), PDs in 8-11 each mapping
 * itself at PDE 3 + byte 6 * 507 / 255, page tables in 12-27.
 *
 * Linear addresses are picked by 3 selector bytes: one 2-bit choice per
 * level among indexes {0, 1, 2, 511} (the self-map slot instead of 2 at the
 * top level), a 12-bit page offset, and bit 22 making the address
 * non-canonical; sign-extended for 4 or 5 levels. 32-bit: PDE {0, 1,
 * self-map, 1023} and PTE {0, 1, 2, 1023}; PAE: PDPTE 0-3, PDE {0, 1,
 * self-map, 511}, PTE {0, 1, 2, 511}; paging off: page (bits 6:0) of RAM,
 * MMIO or unassigned space, bit 22 moving it to the top 1 MiB of 4 GiB.
 *
 * Operations: a code byte (low nibble: kind - 0..10, 11..15 alias 2..6 -
 * high nibble: flags), four argument bytes a0..a3, and for PTE_WRITE nine
 * more. (Kinds 9 and 10 were aliases of 0 and 1 in older corpora.)
 *   0 ACCESS      pgm_soft_access at va(a0..a2); flags 1:0 read, write,
 *                 fetch, read; bit 2 CPL 3; a3 bits 1:0 size 1/2/4/8,
 *                 bit 2 RFLAGS.AC, bits 5:4 flush after (none, INVLPG va,
 *                 non-global, all)
 *   1 PTE_WRITE   an 8-byte (32-bit paging: 4-byte) CPL-0 write (CPL 3
 *                 with flag bit 3) of value (steered as a record: steer
 *                 byte, then 8 bytes) to the linear address, through the
 *                 self-map, of the level 1 + (flags & 3) entry translating
 *                 va(a0..a2) (levels above 2 are 2 in 32-bit and PAE mode;
 *                 with paging off the word at va itself); a3 bits 5:4 the
 *                 OS's flush afterwards as for ACCESS; flag bit 2 (with
 *                 paging on): done by "mov [rdi], rax" ("mov [edi], eax")
 *                 that pgm_emulate_insn runs from the data page that
 *                 va(a1, a2, a3) maps for a fetch, if it maps one
 *   2 SYNC_CR3    MOV CR3 to root a0 % 4 (a1 bit 0: with an address bit
 *                 above MAXPHYADDR, which must #GP)
 *   3 INVLPG      va(a0..a2)
 *   4 FLUSH       pgm_flush_tlb, global = a0 bit 0
 *   5 SET_STATE   pgm_set_cpu_state: a0 control bits as byte 0; a1 bits 1:0
 *                 mode (0/1: IA-32e with LA57 = a0 bit 0, 2: PAE, 3: paging
 *                 off, or with a1 bit 3 32-bit paging with CR4.PSE = a0
 *                 bit 0, or with a1 bit 4 real mode), a1 bit 2
 *                 PGM_STATE_GUEST_WRITE; root a2 % 4
 *   6 PKRU        pgm_set_pkru(a0..a3)
 *   7 HANDLER     a0 % 6: 0 register a WRITE handler on page a1 % 64,
 *                 1 deregister it, 2 start a dirty log on pages
 *                 [a1 % 64, + a2 % 4 + 1), 3 stop it, 4 get-and-clear it,
 *                 5 temp-off the WRITE handler's page then reset it
 *   8 FAIL        fuzz_alloc only: re-arm (a0 bit 0: backend, else
 *                 allocator) failure a1 % 16 allocations from now, or
 *                 disarm when a0 bit 1 is set
 *   9 HANDLER2    (trap0e_handlers.c) a0 % 4: 0 register the MMIO device
 *                 on the MMIO page, 1 deregister it, 2 a guest instruction
 *                 (a3 % 6: mov [rdi] of 1/2/4/8 bytes, mov eax, [rdi],
 *                 movzx eax, byte [rdi]) at va(a1, a2, a3) that
 *                 pgm_emulate_insn runs from the data page va(a2, a3, a0)
 *                 maps, 3 toggle an ALL handler (answering DEFAULT) on page
 *                 a1 % 64. The outcome must match a direct walk: the guest's
 *                 fault, or the device called exactly as the walk says
 *                 (gpa, size, bytes, origin GUEST, the vCPU), the bytes
 *                 landing in RAM, the register loaded with the device's,
 *                 RAM's or the bus's bytes. Outside these ops the device
 *                 reads all-ones (the rule for MMIO below).
 *  10 GVA         pgm_read_gva / pgm_write_gva (flags: bit 0 write, bit 1
 *                 the _simple variant, bit 2 CPL 3, bit 3 NO_AD) of
 *                 1 + (a3 & 63) bytes at va(a0..a2), across the page end
 *                 with a3 bit 6, origin a0 % 3: the first faulting page's
 *                 walk gives the fault (nothing written), else every page
 *                 reads / receives its bytes, MMIO pieces reach the device
 *                 (not with _simple: all-ones, -ENODEV), writes are
 *                 reported by the dirty log
 *
 * ---- What is checked after EVERY operation ----------------------------
 * Law 1, for each access: before it, a direct guest walk (pgm_walk with
 * PGM_ACCESS_NO_AD, which is what the CPU would do on a TLB miss) gives the
 * expected outcome. The SDM lets a TLB keep a translation after the guest
 * changes (tightens or remaps) the entries behind it, until the OS flushes
 * it. So the scenario keeps, per linear page, the translations successful
 * accesses used since that page was last flushed (by INVLPG of it, a
 * non-global flush or MOV CR3 for non-global ones, a global flush or any
 * control-state load for all), mirroring what a TLB may hold. The rule:
 *   - #GP / #PF must equal the current walk exactly (vector, error code,
 *     CR2): libpgm reports a guest fault only from a fresh walk.
 *   - success with no remembered translation for the page ("strict"): the
 *     walk must succeed; a read returns the bytes at the walk's GPA (read
 *     with pgm_phys_read afterwards), a write lands exactly at that GPA (or
 *     nowhere, outside RAM), every entry of the walk has A set and, for a
 *     write, the leaf D (unless the write itself rewrote one of them); a
 *     write to a page under a WRITE handler called it, and under a dirty log
 *     is reported by the next get-and-clear.
 *   - success with remembered translations: "not wider than before": the
 *     access must be allowed (W/U/X rights) by the current walk or by one
 *     remembered translation, and read/write the bytes of one of their GPAs.
 * A correct OS flushes after changing entries; the ops' "flush after"
 * choices make that common, so most accesses are checked strictly.
 * Also for every operation: guest RAM (all 64 pages, read back with
 * pgm_phys_read) changes only where the operation wrote, except for A/D
 * bits going from 0 to 1 in 8-byte words.
 * Laws 2 and 3: pgm_audit(vm) == 0 after every operation (else its message
 * is printed). At the end, pgm_vm_destroy must return every soft-backend
 * page and block (leaks of the VM's own allocations are LeakSanitizer's).
 */
#include "trap0e_scenario.h"
#include "trap0e_handlers.h"
#include "trap0e_virt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAM_PAGES 64
#define RAM_SIZE  (RAM_PAGES * 4096u)
#define NROOTS    4
#define DATA_FIRST 28
#define HDR_SIZE  16
#define REC_SIZE  12
#define HIST_MAX  256
/* pgm_audit after every op costs ~0.1-0.5 ms under ASan + coverage: bound a run. */
#define MAX_OPS   64

#define E_P   (1ull << 0)
#define E_RW  (1ull << 1)
#define E_US  (1ull << 2)
#define E_A   (1ull << 5)
#define E_D   (1ull << 6)
#define E_PS  (1ull << 7)
#define E_G   (1ull << 8)
#define E_XD  (1ull << 63)
#define E_ADDR 0x000ffffffffff000ull
#define DATA_XOR 0x5a5a000000000000ull

static void
fail(const char *what)
{
    fprintf(stderr, "trap0e: %s\n", what);
    abort();
}

static uint64_t
get(const uint8_t *d, size_t size, size_t off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)(off + i < size ? d[off + i] : 0) << (8 * i);
    return v;
}

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* ---- allocation failure injection (fuzz_alloc) ----------------------------- */

struct fail_alloc {
    uint64_t count;    /* allocations made so far */
    uint64_t fail_at;  /* index of the first failing one (UINT64_MAX: none) */
    bool sticky;       /* every allocation from fail_at on fails */
};

static void *
fa_alloc(void *ctx, size_t size)
{
    struct fail_alloc *fa = ctx;
    uint64_t n = fa->count++;
    if (n == fa->fail_at || (fa->sticky && n > fa->fail_at))
        return NULL;
    return malloc(size);
}

static void
fa_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

/* ---- the run ------------------------------------------------------------------ */

struct hist {         /* a translation a TLB may still hold */
    uint64_t vpage, gpage;
    uint32_t rights;
    bool global;
};

struct run {
    const struct trap0e_opts *opts;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    unsigned sm;                 /* self-map slot (IA-32e roots) */
    unsigned sm32;               /* self-map PDE of the 32-bit PDs */
    unsigned smpae;              /* self-map PDE of each PAE PD */
    uint8_t *prev, *now;         /* guest RAM before / after an operation */
    struct hist hist[HIST_MAX];
    unsigned nhist;
    /* handlers */
    bool legacy_host; /* SHADOW_32 / SHADOW_PAE: no IA-32e guests */
    bool nested;      /* EPT / NPT: the soft MMU walks the guest's own tables */
    bool npt;         /* NPT: PAE PDPTEs are read at every walk, not latched */
    bool wh_on;
    uint64_t wh_gpa, wh_calls;
    bool dl_on;
    uint64_t dl_gpa, dl_pages, dl_expect;
    struct fail_alloc *fa;
    char msg[512];
};

static struct pgm_soft_backend *backend;

/*
 * On EPT / NPT the guest's TLB maintenance does not exit: the CPU (the soft
 * MMU, vCPU 0) drops its own linear and combined mappings, never the
 * guest-physical ones (only libpgm's INVEPT-scope flushes do). libpgm is
 * still told, as an embedder that intercepts them would.
 */
static void
cpu_flush(const struct run *r, enum pgm_flush_scope scope, uint64_t va)
{
    if (!r->nested)
        return;
    struct pgm_flush_req req = { .scope = scope, .addr = va };
    pgm_soft_mmu_guest_flush(backend, 0, &req);
}

/* MOV CR3 or a CR0 / CR4 load: a PAE guest's PDPTEs are read again. */
static void
cpu_cr3_load(const struct run *r)
{
    if (r->nested)
        pgm_soft_mmu_guest_cr3_load(backend, 0);
}

/* TRAP0E_STATS=1: print what each input reached (outcomes, pool activity). */
static struct {
    uint64_t ok_strict, ok_stale, pf, gp, errors, ops;
} tally;

/* Paging levels of the current mode: 0 (paging off), 2 (32-bit), 3 (PAE), 4, 5. */
static unsigned
levels(const struct run *r)
{
    switch (pgm_guest_mode(r->vcpu)) {
    case PGM_MODE_LA57: return 5;
    case PGM_MODE_AMD64: return 4;
    case PGM_MODE_PAE: return 3;
    case PGM_MODE_32BIT: return 2;
    default: return 0;
    }
}

static bool
ia32e(const struct run *r)
{
    return levels(r) >= 4;
}

/* Bytes per paging-structure entry in the current mode. */
static unsigned
esize(const struct run *r)
{
    return levels(r) == 2 ? 4 : 8;
}

static uint64_t
canon(uint64_t va, unsigned n)
{
    unsigned bits = n == 5 ? 57 : 48;
    return (uint64_t)((int64_t)(va << (64 - bits)) >> (64 - bits));
}

/* A linear address from a 24-bit selector. */
static uint64_t
va_of(const struct run *r, uint32_t sel)
{
    unsigned n = levels(r);
    uint64_t off = (sel >> 10) & 0xfff;
    if (n == 0) {
        /* paging off: a page of RAM (tables and data), the MMIO page or
         * unassigned space above it; bit 22 the top of the 4 GiB */
        uint64_t va = ((uint64_t)(sel & 0x7f) << 12) | off;
        return sel & (1u << 22) ? va | 0xfff00000ull : va;
    }
    if (n == 2) {
        const unsigned pd[4] = { 0, 1, r->sm32, 1023 }, pt[4] = { 0, 1, 2, 1023 };
        return ((uint64_t)pd[(sel >> 2) & 3] << 22) | ((uint64_t)pt[sel & 3] << 12) | off;
    }
    if (n == 3) {
        const unsigned pd[4] = { 0, 1, r->smpae, 511 }, pt[4] = { 0, 1, 2, 511 };
        return ((uint64_t)((sel >> 4) & 3) << 30) | ((uint64_t)pd[(sel >> 2) & 3] << 21) |
               ((uint64_t)pt[sel & 3] << 12) | off;
    }
    const unsigned choice[4] = { 0, 1, 2, 511 };
    uint64_t va = 0;
    for (unsigned l = 1; l <= n; l++) {
        unsigned c = (sel >> (2 * (l - 1))) & 3;
        unsigned idx = l == n && c == 2 ? r->sm : choice[c];
        va |= (uint64_t)idx << (12 + 9 * (l - 1));
    }
    va |= (sel >> 10) & 0xfff;
    va = canon(va, n);
    if (sel & (1u << 22))
        va ^= 1ull << 60; /* above bit 56/47 and not matching the sign: non-canonical */
    return va;
}

/* Linear address, through the self-map, of the level-L entry translating va. */
static uint64_t
entry_va(const struct run *r, uint64_t va, unsigned level)
{
    unsigned n = levels(r);
    if (n == 0)
        return va & ~7ull; /* paging off: the "entry" is the RAM word itself */
    if (n == 2) {
        /* PD entry sm32 maps the PD as a page table */
        uint64_t base = (uint64_t)r->sm32 << 22;
        return level == 1 ? base | ((va >> 12) & 0xfffff) * 4
                          : base | ((uint64_t)r->sm32 << 12) | (va >> 22) * 4;
    }
    if (n == 3) {
        /* each PD maps itself at entry smpae: only the entries of the
         * quarter va lies in (the PDPT is not reachable: level 3 -> 2) */
        uint64_t base = (va & 0xc0000000ull) | ((uint64_t)r->smpae << 21);
        return level == 1 ? base | ((va >> 12) & 0x3ffff) * 8
                          : base | ((uint64_t)r->smpae << 12) | ((va >> 21) & 511) * 8;
    }
    uint64_t idx[6];
    for (unsigned l = 1; l <= n; l++)
        idx[l] = (va >> (12 + 9 * (l - 1))) & 511;
    /* VA indexes top-down: sm repeated `level` times, then idx[n] .. idx[level + 1]. */
    uint64_t out = 0;
    unsigned pos = n; /* VA level being filled */
    for (unsigned k = 0; k < level; k++, pos--)
        out |= (uint64_t)r->sm << (12 + 9 * (pos - 1));
    for (unsigned l = n; l > level; l--, pos--)
        out |= idx[l] << (12 + 9 * (pos - 1));
    out |= idx[level] * 8;
    return canon(out, n);
}

static void
hist_clear(struct run *r, bool keep_global)
{
    unsigned j = 0;
    for (unsigned i = 0; i < r->nhist; i++)
        if (keep_global && r->hist[i].global)
            r->hist[j++] = r->hist[i];
    r->nhist = j;
}

static void
hist_drop_va(struct run *r, uint64_t va)
{
    unsigned j = 0;
    for (unsigned i = 0; i < r->nhist; i++)
        if (r->hist[i].vpage != va >> 12)
            r->hist[j++] = r->hist[i];
    r->nhist = j;
}

static void
hist_add(struct run *r, uint64_t va, const struct pgm_walk *w, bool pge)
{
    for (unsigned i = 0; i < r->nhist; i++) {
        struct hist *h = &r->hist[i];
        if (h->vpage == va >> 12 && h->gpage == w->gpa >> 12 && h->rights == w->rights &&
            h->global == (w->global && pge))
            return;
    }
    if (r->nhist == HIST_MAX) {
        /* Too much to remember: do what an OS could, flush everything. */
        if (pgm_flush_tlb(r->vcpu, true) != 0)
            fail("pgm_flush_tlb failed");
        cpu_flush(r, PGM_FLUSH_ALL, 0);
        r->nhist = 0;
    }
    r->hist[r->nhist++] = (struct hist){ va >> 12, w->gpa >> 12, w->rights, w->global && pge };
}

static bool
rights_allow(uint32_t rights, uint32_t access)
{
    if ((access & PGM_ACCESS_USER) && !(rights & PGM_RIGHT_USER))
        return false;
    if ((access & PGM_ACCESS_WRITE) && !(rights & PGM_RIGHT_WRITE))
        return false;
    if ((access & PGM_ACCESS_FETCH) && !(rights & PGM_RIGHT_EXEC))
        return false;
    return true;
}

static void
dump_walk(const char *tag, const struct pgm_walk *w)
{
    fprintf(stderr, "  %s: gva %#llx status %d error %#x gpa %#llx levels %u..%u rights %#x\n",
            tag, (unsigned long long)w->gva, w->status, w->error_code,
            (unsigned long long)w->gpa, w->top_level, w->last_level, w->rights);
    for (unsigned l = w->top_level; l >= w->last_level && l >= 1; l--)
        fprintf(stderr, "    level %u entry %#018llx at gpa %#llx\n", l,
                (unsigned long long)w->entry[l], (unsigned long long)w->entry_gpa[l]);
}

static void
audit(struct run *r, const char *after)
{
    int rc = pgm_audit(r->vm, r->msg, sizeof(r->msg));
    if (rc != 0) {
        fprintf(stderr, "trap0e: pgm_audit after %s: rc %d: %s\n", after, rc, r->msg);
        abort();
    }
}

/* Byte range a write may have landed in. */
struct span {
    uint64_t gpa;
    size_t len;
};

/*
 * Guest RAM changed only inside @spans, or by A/D bits going 0 -> 1.
 * Leaves r->prev holding the new contents.
 */
static void
check_ram(struct run *r, const struct span *spans, unsigned nspans, const char *after)
{
    int rc = pgm_phys_read(r->vm, 0, r->now, RAM_SIZE);
    if (rc != 0)
        fail("pgm_phys_read of guest RAM failed"); /* it allocates nothing */
    for (unsigned p = 0; p < RAM_PAGES; p++) {
        const uint8_t *a = r->prev + p * 4096, *b = r->now + p * 4096;
        if (!memcmp(a, b, 4096))
            continue;
        for (unsigned o = 0; o < 4096; o++) {
            if (a[o] == b[o])
                continue;
            uint64_t gpa = (uint64_t)p * 4096 + o;
            bool in_span = false;
            for (unsigned s = 0; s < nspans; s++)
                if (gpa >= spans[s].gpa && gpa < spans[s].gpa + spans[s].len)
                    in_span = true;
            if (in_span)
                continue;
            /* A (bit 5) and D (bit 6) of an entry's low byte, set only. */
            if (o % esize(r) == 0 && !((a[o] ^ b[o]) & ~0x60) && !(a[o] & ~b[o]))
                continue;
            fprintf(stderr, "trap0e: after %s guest RAM byte %#llx changed %#x -> %#x\n", after,
                    (unsigned long long)gpa, a[o], b[o]);
            abort();
        }
    }
    uint8_t *t = r->prev;
    r->prev = r->now;
    r->now = t;
}

static void
after_op(struct run *r, const char *what)
{
    audit(r, what);
    check_ram(r, NULL, 0, what);
}

/* Check an API result: 0 (or, with failure injection, any negative). */
static bool
api_ok(struct run *r, int rc, const char *what)
{
    if (rc == 0)
        return true;
    if (rc == -EIO)
        fail(what);
    if (r->opts->inject_failures && rc < 0)
        return false;
    fprintf(stderr, "trap0e: %s returned %d\n", what, rc);
    abort();
}

static void
os_flush(struct run *r, unsigned how, uint64_t va)
{
    int rc = 0;
    switch (how & 3) {
    case 0:
        return;
    case 1:
        rc = pgm_invlpg(r->vcpu, va);
        cpu_flush(r, PGM_FLUSH_GVA, va);
        hist_drop_va(r, va);
        break;
    case 2:
        rc = pgm_flush_tlb(r->vcpu, false);
        cpu_flush(r, PGM_FLUSH_NONGLOBAL, 0);
        hist_clear(r, true);
        break;
    case 3:
        rc = pgm_flush_tlb(r->vcpu, true);
        cpu_flush(r, PGM_FLUSH_ALL, 0);
        hist_clear(r, false);
        break;
    }
    if (rc != 0)
        fail("flush failed");
    after_op(r, "os flush");
}

static enum pgm_handler_result
wh_cb(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
      enum pgm_access_origin origin, void *user)
{
    (void)vcpu, (void)gpa, (void)buf, (void)size, (void)origin;
    struct run *r = user;
    if (write)
        r->wh_calls++;
    return PGM_HANDLER_DEFAULT;
}

/* One access through libpgm, checked against the guest walk (law 1). */
static void
do_access(struct run *r, uint64_t va, uint32_t access, size_t size, uint64_t value)
{
    uint8_t buf[8], orig[8];
    bool write = access & PGM_ACCESS_WRITE;
    if ((va & 0xfff) + size > 4096)
        va -= size;
    if (r->npt && pgm_guest_mode(r->vcpu) == PGM_MODE_PAE) {
        /*
         * Under NPT the CPU reads a PAE guest's PDPTEs at every walk (no
         * latch), libpgm's walker uses the ones latched at the last CR3 load
         * (docs/soft-mmu.md): a guest that reloads CR3 after every write
         * sees no difference. The reload flushes the non-global TLB.
         */
        struct pgm_cpu_state st;
        pgm_get_cpu_state(r->vcpu, &st);
        int lrc = pgm_sync_cr3(r->vcpu, st.cr3);
        cpu_flush(r, PGM_FLUSH_NONGLOBAL, 0);
        hist_clear(r, true);
        if (lrc != 0) {
            /*
             * A PDPTE with reserved bits: MOV CR3 raises #GP and libpgm's
             * walker keeps its latch, while the NPT walk reads the invalid
             * entry itself. No common answer to check against: skip.
             */
            audit(r, "access skipped (invalid PDPT under NPT)");
            return;
        }
    }
    memcpy(buf, &value, 8);
    memcpy(orig, buf, 8);
    struct pgm_walk w;
    if (pgm_walk(r->vcpu, va, access | PGM_ACCESS_NO_AD, &w) != 0)
        fail("pgm_walk failed");
    bool pge = false;
    {
        struct pgm_cpu_state st;
        pgm_get_cpu_state(r->vcpu, &st);
        pge = st.cr4 & PGM_CR4_PGE;
    }
    /* What a TLB may remember for this page. */
    struct span spans[HIST_MAX + 1];
    unsigned nspans = 0;
    bool strict = true;
    for (unsigned i = 0; i < r->nhist; i++) {
        if (r->hist[i].vpage != va >> 12)
            continue;
        strict = false;
        if (rights_allow(r->hist[i].rights, access))
            spans[nspans++] = (struct span){ (r->hist[i].gpage << 12) | (va & 0xfff), size };
    }
    if (w.status == PGM_WALK_OK)
        spans[nspans++] = (struct span){ w.gpa, size };

    uint64_t wh_before = r->wh_calls;
    struct pgm_fault_out out;
    if (getenv("TRAP0E_TRACE"))
        fprintf(stderr, "  access va %#llx access %#x size %zu walk status %d gpa %#llx err %#x\n",
                (unsigned long long)va, access, size, w.status, (unsigned long long)w.gpa,
                w.error_code);
    int rc = pgm_soft_access(r->vcpu, va, access, buf, size, &out);
    char what[128];
    snprintf(what, sizeof(what), "access va %#llx access %#x size %zu",
             (unsigned long long)va, access, size);
    if (rc != 0) {
        if (!r->opts->inject_failures || rc == -EIO || rc > 0) {
            struct pgm_cpu_state st;
            pgm_get_cpu_state(r->vcpu, &st);
            fprintf(stderr, "trap0e: %s returned %d (cr0 %#llx cr4 %#llx efer %#llx pkru %#x, "
                    "leaf pkey %u)\n", what, rc, (unsigned long long)st.cr0,
                    (unsigned long long)st.cr4, (unsigned long long)st.efer, st.pkru, w.pkey);
            dump_walk("walk before", &w);
            abort();
        }
        tally.errors++;
        audit(r, what);
        check_ram(r, spans, nspans, what);
        return;
    }
    if (w.status == PGM_WALK_GP) {
        if (out.result != PGM_FAULT_INJECT || out.vector != 13)
            fail("non-canonical access not refused with #GP");
    } else if (out.result == PGM_FAULT_INJECT) {
        /*
         * On EPT / NPT the guest sees the CPU's own #PF: with a translation
         * remembered since the last flush (not strict), a TLB may still hold
         * a narrower one and fault spuriously on a protection check, as the
         * SDM allows after a PTE was widened without INVLPG.
         */
        bool spurious = r->nested && !strict && out.vector == 14 && out.address == va &&
                        (out.error_code & PGM_PFEC_P);
        if (!spurious && (w.status != PGM_WALK_PAGE_FAULT || out.vector != 14 ||
                          out.error_code != w.error_code || out.address != va)) {
            fprintf(stderr,
                    "trap0e: %s: libpgm injected vector %u error %#x cr2 %#llx; walk status "
                    "%d error %#x (mode %s, %s)\n",
                    what, out.vector, out.error_code, (unsigned long long)out.address, w.status,
                    w.error_code, pgm_guest_mode_name(pgm_guest_mode(r->vcpu)),
                    strict ? "strict" : "stale allowed");
            dump_walk("walk before", &w);
            abort();
        }
    } else if (out.result != PGM_FAULT_RESUME) {
        fprintf(stderr, "trap0e: %s: unexpected result %d\n", what, out.result);
        abort();
    } else {
        /* Done. By the current walk, or (not strict) by a remembered translation. */
        if (w.status != PGM_WALK_OK && (strict || nspans == 0)) {
            fprintf(stderr, "trap0e: %s succeeded; the guest walk faults (error %#x)%s\n", what,
                    w.error_code, strict ? " and no flush is pending" : "");
            dump_walk("walk before", &w);
            abort();
        }
        if (w.status != PGM_WALK_OK && !strict)
            ; /* a stale translation: allowed until the OS flushes */
        else
            hist_add(r, va, &w, pge);
    }
    bool resumed = out.result == PGM_FAULT_RESUME;
    if (resumed)
        *(strict ? &tally.ok_strict : &tally.ok_stale) += 1;
    else
        *(out.vector == 13 ? &tally.gp : &tally.pf) += 1;
    audit(r, what);
    /* Data: a read saw, a write left, the bytes of one allowed GPA. */
    if (pgm_phys_read(r->vm, 0, r->now, RAM_SIZE) != 0)
        fail("pgm_phys_read of guest RAM failed");
    if (resumed) {
        bool match = false;
        for (unsigned s = 0; s < nspans && !match; s++) {
            uint64_t g = spans[s].gpa;
            if (g + size > RAM_SIZE) {
                /* Outside RAM: reads see all-ones, writes vanish. */
                uint8_t ones[8];
                memset(ones, 0xff, sizeof(ones));
                match = write || !memcmp(buf, ones, size);
            } else {
                match = !memcmp(write ? orig : buf, r->now + g, size);
            }
            if (match && strict && write && g + size <= RAM_SIZE) {
                uint64_t page = g & ~0xfffull;
                if (r->wh_on && page == r->wh_gpa && r->wh_calls == wh_before)
                    fail("a guest write to a WRITE-handler page did not call the handler");
                if (r->dl_on && page >= r->dl_gpa && page < r->dl_gpa + r->dl_pages * 4096)
                    r->dl_expect |= 1ull << ((page - r->dl_gpa) >> 12);
            }
        }
        if (!match) {
            if (!write)
                for (uint64_t g = va & 0xfff; g + size <= RAM_SIZE; g += 4096)
                    if (!memcmp(buf, r->now + g, size))
                        fprintf(stderr, "  the bytes read are those at gpa %#llx\n",
                                (unsigned long long)g);
            dump_walk("walk before", &w);
            fprintf(stderr, "trap0e: %s: the %s bytes match no allowed GPA (walk gpa %#llx, %u "
                    "candidates, %s)\n", what, write ? "written" : "read",
                    (unsigned long long)w.gpa, nspans, strict ? "strict" : "stale allowed");
            abort();
        }
        /* A bits on the walk's entries, D on a written leaf. */
        if (strict && w.status == PGM_WALK_OK) {
            bool overlap = false;
            for (unsigned l = w.last_level; l <= w.top_level; l++)
                if (write && w.entry_gpa[l] + 8 > w.gpa && w.entry_gpa[l] < w.gpa + size)
                    overlap = true;
            struct pgm_walk w2;
            if (!overlap && pgm_walk(r->vcpu, va, PGM_ACCESS_NO_AD, &w2) == 0 &&
                w2.status == PGM_WALK_OK) {
                /* No entries without paging; PAE PDPTEs have no A bit. */
                bool pae = pgm_guest_mode(r->vcpu) == PGM_MODE_PAE;
                for (unsigned l = w2.last_level ? w2.last_level : 1; l <= w2.top_level; l++)
                    if (!(pae && l == 3) && w2.entry_gpa[l] + 8 <= RAM_SIZE &&
                        !(w2.entry[l] & E_A)) {
                        fprintf(stderr, "trap0e: %s: level %u entry without A\n", what, l);
                        abort();
                    }
                if (write && w2.top_level && w2.entry_gpa[w2.last_level] + 8 <= RAM_SIZE &&
                    !(w2.entry[w2.last_level] & E_D))
                    fail("written leaf without D");
            }
        }
    }
    /* The rest of RAM: only A/D bits. */
    struct span *use = resumed && write ? spans : NULL;
    check_ram(r, use, use ? nspans : 0, what);
}

/* Modes of set_state(): 0/1 IA-32e (LA57 = ctl bit 0), 2 PAE, 3 paging off
 * (protected), 4 32-bit paging (PSE = ctl bit 0), 5 real mode. */
static int
set_state(struct run *r, unsigned ctl, unsigned mode, unsigned root, bool guest_write)
{
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG, .cr3 = (uint64_t)root << 12 };
    struct pgm_cpu_state old;
    pgm_get_cpu_state(r->vcpu, &old);
    st.pkru = old.pkru;
    if (ctl & 2)
        st.cr0 |= PGM_CR0_WP;
    st.cr4 = (ctl & 4 ? PGM_CR4_SMEP : 0) | (ctl & 8 ? PGM_CR4_SMAP : 0) |
             (ctl & 16 ? PGM_CR4_PKE : 0) | (ctl & 64 ? PGM_CR4_PGE : 0);
    st.efer = ctl & 32 ? PGM_EFER_NXE : 0;
    switch (mode) {
    case 0:
    case 1:
        st.cr4 |= PGM_CR4_PAE | (ctl & 1 ? PGM_CR4_LA57 : 0);
        st.efer |= PGM_EFER_LME;
        break;
    case 2:
        st.cr4 |= PGM_CR4_PAE;
        break;
    case 4:
        st.cr4 |= ctl & 1 ? PGM_CR4_PSE : 0;
        break;
    case 5:
        st.cr0 &= ~(PGM_CR0_PG | PGM_CR0_PE);
        break;
    default:
        st.cr0 &= ~PGM_CR0_PG;
        break;
    }
    int rc = pgm_set_cpu_state(r->vcpu, &st, guest_write ? PGM_STATE_GUEST_WRITE : 0);
    if (rc == PGM_RC_INJECT_GP)
        return rc; /* state unchanged */
    if (r->legacy_host && mode <= 1 && rc == 0) {
        /* A legacy host cannot shadow IA-32e guests: the state is the
         * guest's and is accepted, every shadow operation then reports
         * -EOPNOTSUPP; the VMM goes back to the previous state (or to
         * paging off when its PAE PDPTEs no longer load). */
        uint64_t v;
        struct pgm_fault_out out;
        rc = pgm_soft_access(r->vcpu, 0, PGM_ACCESS_READ, &v, 1, &out);
        if (rc != -EOPNOTSUPP) {
            fprintf(stderr, "trap0e: pgm_soft_access in IA-32e mode returned %d\n", rc);
            fail("an IA-32e guest ran on a 32-bit/PAE host");
        }
        rc = pgm_set_cpu_state(r->vcpu, &old, 0);
        if (rc == PGM_RC_INJECT_GP) {
            old.cr0 &= ~PGM_CR0_PG;
            old.cr4 &= ~PGM_CR4_PCIDE;
            rc = pgm_set_cpu_state(r->vcpu, &old, 0);
        }
        if (rc != 0 && !(r->opts->inject_failures && rc < 0 && rc != -EIO)) {
            fprintf(stderr, "trap0e: restoring the state returned %d\n", rc);
            fail("the state before an IA-32e load could not be restored");
        }
    }
    if (api_ok(r, rc, "pgm_set_cpu_state") || rc < 0) {
        hist_clear(r, false); /* a state load flushes the vCPU's whole TLB */
        cpu_flush(r, PGM_FLUSH_ALL, 0);
        cpu_cr3_load(r);
    }
    return rc;
}

static void
handler_op(struct run *r, unsigned a0, unsigned a1, unsigned a2)
{
    int rc;
    switch (a0 % 6) {
    case 0:
        if (r->wh_on)
            return;
        r->wh_gpa = (uint64_t)(a1 % RAM_PAGES) << 12;
        rc = pgm_handler_register(r->vm, &(struct pgm_phys_handler){
            .kind = PGM_HANDLER_WRITE, .gpa = r->wh_gpa, .size = 4096, .fn = wh_cb, .user = r });
        if (rc == -EEXIST)
            return; /* a dirty log covers it */
        r->wh_on = api_ok(r, rc, "pgm_handler_register");
        return;
    case 1:
        if (!r->wh_on)
            return;
        rc = pgm_handler_deregister(r->vm, r->wh_gpa);
        if (api_ok(r, rc, "pgm_handler_deregister"))
            r->wh_on = false;
        return;
    case 2:
        if (r->dl_on)
            return;
        r->dl_gpa = (uint64_t)(a1 % RAM_PAGES) << 12;
        r->dl_pages = a2 % 4 + 1;
        if (r->dl_gpa + r->dl_pages * 4096 > RAM_SIZE)
            r->dl_pages = (RAM_SIZE - r->dl_gpa) / 4096;
        rc = pgm_dirty_log_start(r->vm, r->dl_gpa, r->dl_pages * 4096);
        if (rc == -EEXIST)
            return;
        r->dl_on = api_ok(r, rc, "pgm_dirty_log_start");
        r->dl_expect = 0;
        return;
    case 3:
        if (!r->dl_on)
            return;
        if (pgm_dirty_log_stop(r->vm, r->dl_gpa) != 0)
            fail("pgm_dirty_log_stop failed");
        r->dl_on = false;
        return;
    case 4: {
        if (!r->dl_on)
            return;
        uint64_t bm = 0;
        if (pgm_dirty_log_get_and_clear(r->vm, r->dl_gpa, &bm) != 0)
            fail("pgm_dirty_log_get_and_clear failed");
        if ((bm & r->dl_expect) != r->dl_expect) {
            fprintf(stderr, "trap0e: dirty log missed writes: reported %#llx, written %#llx\n",
                    (unsigned long long)bm, (unsigned long long)r->dl_expect);
            abort();
        }
        r->dl_expect = 0;
        return;
    }
    case 5:
        if (!r->wh_on)
            return;
        if (pgm_handler_temp_off(r->vm, r->wh_gpa) != 0)
            fail("pgm_handler_temp_off failed");
        after_op(r, "handler temp-off");
        if (pgm_handler_reset(r->vm, r->wh_gpa) != 0)
            fail("pgm_handler_reset failed");
        return;
    }
}

/*
 * After an operation of trap0e_handlers.c: its writes are reported by the
 * next dirty-log round (simple writes included: libpgm still logs them),
 * then laws 2 and 3 and the RAM check with its spans.
 */
static void
ext_after(struct run *r, const struct t0x_ctx *c, const char *what)
{
    struct span spans[4];
    for (unsigned i = 0; i < c->nspans; i++) {
        spans[i] = (struct span){ c->spans[i].gpa, c->spans[i].len };
        uint64_t first = c->spans[i].gpa >> 12;
        uint64_t last = (c->spans[i].gpa + c->spans[i].len - 1) >> 12;
        for (uint64_t p = first; r->dl_on && !c->uncertain && p <= last; p++)
            if (p >= r->dl_gpa >> 12 && p < (r->dl_gpa >> 12) + r->dl_pages)
                r->dl_expect |= 1ull << (p - (r->dl_gpa >> 12));
    }
    audit(r, what);
    check_ram(r, spans, c->nspans, what);
}

/* Build the base tables from the seed, then apply the records. */
/* Base tables in 32-bit format: PDs in pages 0-3, page tables in 12-27. */
/*
 * A PTE write done by an instruction, as a guest's MOV to its page table
 * would be finished after a write-protection fault: "mov [rdi], rax" (or
 * "mov [edi], eax" in 32-bit code) placed in the data page the code address
 * @code_va maps, run by pgm_emulate_insn. The outcome must equal the direct
 * walk of @eva (law 1): the bytes land at the walked GPA and RIP advances,
 * or the guest's own #PF / #GP is returned and nothing is written. False
 * when the scenario offers no place for the code (the caller then writes
 * through pgm_soft_access).
 */
static bool
emulated_write(struct run *r, uint64_t code_va, uint64_t eva, uint64_t value, bool user)
{
    unsigned n = levels(r);
    if (n == 0)
        return false; /* paging off: real mode's 16-bit code reads other registers */
    bool x64 = ia32e(r);
    static const uint8_t mov64[3] = { 0x48, 0x89, 0x07 }, mov32[2] = { 0x89, 0x07 };
    const uint8_t *insn = x64 ? mov64 : mov32;
    size_t len = x64 ? 3 : 2, size = x64 ? 8 : 4;
    uint32_t cpl_acc = user ? PGM_ACCESS_USER : 0;
    code_va &= ~(uint64_t)0xf;
    struct pgm_walk cw;
    if (pgm_walk(r->vcpu, code_va, PGM_ACCESS_FETCH | cpl_acc | PGM_ACCESS_NO_AD, &cw) != 0)
        fail("pgm_walk failed");
    /* Code only in the data pages (28..63): the tables stay as the input made them. */
    if (cw.status != PGM_WALK_OK || cw.gpa >= RAM_SIZE || (cw.gpa >> 12) < 28)
        return false;
    if (pgm_phys_write(r->vm, cw.gpa, insn, len) != 0)
        return false; /* failure injection */
    memcpy(r->prev + cw.gpa, insn, len);
    if ((eva & 0xfff) + size > 4096)
        eva -= size;
    struct pgm_walk w;
    if (pgm_walk(r->vcpu, eva, PGM_ACCESS_WRITE | cpl_acc | PGM_ACCESS_NO_AD, &w) != 0)
        fail("pgm_walk failed");
    struct pgm_regs regs = { .rip = code_va, .rflags = 2, .cpl = user ? 3 : 0,
                             .code_bits = x64 ? 64 : 32 };
    regs.gpr[PGM_RDI] = x64 ? eva : (uint32_t)eva;
    regs.gpr[PGM_RAX] = value;
    struct pgm_fault_out out;
    int rc = pgm_emulate_insn(r->vcpu, &regs, &out);
    char what[96];
    snprintf(what, sizeof(what), "emulated write to %#llx", (unsigned long long)eva);
    struct span span = { w.gpa, size };
    bool wrote = w.status == PGM_WALK_OK && w.gpa < RAM_SIZE;
    if (rc != 0) {
        if (!r->opts->inject_failures || rc == -EIO || rc > 0) {
            fprintf(stderr, "trap0e: %s returned %d\n", what, rc);
            abort();
        }
        tally.errors++;
    } else if (w.status == PGM_WALK_OK) {
        if (out.result == PGM_FAULT_EXIT) {
            wrote = false; /* not finished: nothing may have changed */
        } else if (out.result != PGM_FAULT_EMULATED || regs.rip != code_va + len) {
            fprintf(stderr, "trap0e: %s: result %d rip %#llx; the walk allows it\n", what,
                    out.result, (unsigned long long)regs.rip);
            abort();
        } else if (wrote && !(r->wh_on && w.gpa >> 12 == r->wh_gpa >> 12)) {
            uint64_t got = 0;
            pgm_phys_read(r->vm, w.gpa, &got, size);
            if (memcmp(&got, &value, size)) {
                fprintf(stderr, "trap0e: %s: %#llx at gpa %#llx, not %#llx\n", what,
                        (unsigned long long)got, (unsigned long long)w.gpa,
                        (unsigned long long)value);
                abort();
            }
        }
    } else {
        wrote = false;
        bool gp = w.status == PGM_WALK_GP;
        if (out.result != PGM_FAULT_INJECT || out.vector != (gp ? 13 : 14) ||
            (!gp && (out.error_code != w.error_code || out.address != eva))) {
            fprintf(stderr, "trap0e: %s: result %d vector %u error %#x; walk status %d error %#x\n",
                    what, out.result, out.vector, out.error_code, w.status, w.error_code);
            abort();
        }
    }
    audit(r, what);
    check_ram(r, wrote || rc != 0 ? &span : NULL, wrote || rc != 0 ? 1 : 0, what);
    return true;
}

static void
build_image32(uint8_t *img, uint32_t seed, unsigned sm32, bool sm_user)
{
    const unsigned idxs[4] = { 0, 1, 2, 1023 };
    for (unsigned page = 0; page < 28; page++) {
        unsigned l = page < NROOTS ? 2 : page >= 12 ? 1 : 0;
        if (!l)
            continue;
        for (unsigned k = 0; k < 4; k++) {
            uint64_t h = mix(((uint64_t)seed << 32) ^ (page * 1024 + idxs[k]) ^ 0x3200000000ull);
            if ((h & 31) == 0)
                continue;
            uint32_t e = (uint32_t)E_P;
            e |= (h >> 4) & 7 ? (uint32_t)E_RW : 0;
            e |= (h >> 7) & 7 ? (uint32_t)E_US : 0;
            e |= (h >> 10) & 1 ? (uint32_t)E_A : 0;
            uint32_t target;
            if (l == 2 && ((h >> 14) & 7) == 0) {
                /* a 4 MiB page at GPA 0 (with CR4.PSE), now and then with
                 * PSE-36 address bits (above RAM) or a reserved bit 21 */
                e |= (uint32_t)(E_PS | ((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G));
                if (((h >> 40) & 7) == 0)
                    e |= (uint32_t)((h >> 43) & 15) << 13;
                if (((h >> 47) & 15) == 0)
                    e |= 1u << 21;
                target = 0;
            } else if (l == 2) {
                target = 12 + (uint32_t)((h >> 20) % 16);
            } else {
                e |= (uint32_t)(((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G));
                target = (h >> 20) & 7 ? DATA_FIRST + (uint32_t)((h >> 24) % (RAM_PAGES - DATA_FIRST))
                                       : (uint32_t)((h >> 24) % RAM_PAGES);
            }
            e |= target << 12;
            memcpy(img + page * 4096 + idxs[k] * 4, &e, 4);
        }
    }
    for (unsigned root = 0; root < NROOTS; root++) {
        uint32_t e = (root << 12) | (uint32_t)(E_P | E_RW | (sm_user ? E_US : 0));
        memcpy(img + root * 4096 + sm32 * 4, &e, 4);
    }
}

/* Base tables in PAE format: PDPTs in pages 0-3 (4 entries), PDs in 8-11
 * (each mapping itself at smpae), page tables in 12-27. */
static void
build_image_pae(uint8_t *img, uint32_t seed, unsigned smpae, bool sm_user)
{
    const unsigned idxs[4] = { 0, 1, 2, 511 };
    for (unsigned page = 0; page < 28; page++) {
        unsigned l = page < NROOTS ? 3 : page >= 12 ? 1 : page >= 8 ? 2 : 0;
        if (!l)
            continue;
        for (unsigned k = 0; k < 4; k++) {
            unsigned idx = l == 3 ? k : idxs[k];
            uint64_t h = mix(((uint64_t)seed << 32) ^ (page * 1024 + idx) ^ 0xae00000000ull);
            if ((h & 31) == 0)
                continue;
            uint64_t e = E_P, target;
            if (l == 3) {
                /* PDPTE: P, PWT/PCD and the address; rarely a reserved bit
                 * (MOV CR3 then raises #GP) */
                e |= (h >> 5) & 1 ? 8 : 0;
                if (((h >> 6) & 31) == 0)
                    e |= (h >> 11) & 1 ? E_RW : E_XD;
                target = 8 + (h >> 20) % 4;
                memcpy(img + page * 4096 + idx * 8, &(uint64_t){ e | target << 12 }, 8);
                continue;
            }
            e |= (h >> 4) & 7 ? E_RW : 0;
            e |= (h >> 7) & 7 ? E_US : 0;
            e |= (h >> 10) & 1 ? E_A : 0;
            e |= (h >> 11) & 7 ? 0 : E_XD;
            if (l == 2 && ((h >> 14) & 7) == 0) {
                e |= E_PS | ((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G);
                target = 0;
            } else if (l == 2) {
                target = 12 + (h >> 20) % 16;
            } else {
                e |= ((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G);
                target = (h >> 20) & 7 ? DATA_FIRST + (h >> 24) % (RAM_PAGES - DATA_FIRST)
                                       : (h >> 24) % RAM_PAGES;
            }
            e |= target << 12;
            memcpy(img + page * 4096 + idx * 8, &e, 8);
        }
    }
    for (unsigned pd = 8; pd < 12; pd++) {
        uint64_t e = ((uint64_t)pd << 12) | E_P | E_RW | (sm_user ? E_US : 0);
        memcpy(img + pd * 4096 + smpae * 8, &e, 8);
    }
}

static void
build_image(uint8_t *img, const uint8_t *data, size_t size, unsigned fmt, bool la57,
            const struct run *r, bool sm_user)
{
    uint32_t seed = (uint32_t)get(data, size, 7, 4);
    unsigned sm = r->sm;
    unsigned n = la57 ? 5 : 4;
    /* First page and count of the tables at each level. */
    unsigned first[6], count[6];
    if (la57) {
        first[5] = 0, count[5] = 4, first[4] = 4, count[4] = 2, first[3] = 6, count[3] = 2;
    } else {
        first[4] = 0, count[4] = 4, first[3] = 4, count[3] = 4;
    }
    first[2] = 8, count[2] = 4, first[1] = 12, count[1] = 16;
    memset(img, 0, RAM_SIZE);
    for (unsigned p = DATA_FIRST; p < RAM_PAGES; p++)
        for (unsigned o = 0; o < 4096; o += 8) {
            uint64_t v = ((uint64_t)p * 4096 + o) ^ DATA_XOR;
            memcpy(img + p * 4096 + o, &v, 8);
        }
    const unsigned idxs[4] = { 0, 1, 2, 511 };
    for (unsigned l = n; l >= 1 && fmt >= 4; l--) {
        for (unsigned t = 0; t < count[l]; t++) {
            unsigned page = first[l] + t;
            for (unsigned k = 0; k < 4; k++) {
                uint64_t h = mix(((uint64_t)seed << 32) ^ (page * 1024 + idxs[k]));
                if ((h & 31) == 0)
                    continue; /* not present */
                uint64_t e = E_P;
                e |= (h >> 4) & 7 ? E_RW : 0;
                e |= (h >> 7) & 7 ? E_US : 0;
                e |= (h >> 10) & 1 ? E_A : 0;
                e |= (h >> 11) & 7 ? 0 : E_XD;
                uint64_t target;
                if (l >= 2 && l <= 3 && ((h >> 14) & 7) == 0) {
                    e |= E_PS | ((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G);
                    target = 0; /* large page at GPA 0 */
                } else if (l >= 2) {
                    target = first[l - 1] + (h >> 20) % count[l - 1];
                } else {
                    e |= ((h >> 17) & 1 ? E_D : 0) | ((h >> 18) & 3 ? 0 : E_G);
                    target = (h >> 20) & 7 ? DATA_FIRST + (h >> 24) % (RAM_PAGES - DATA_FIRST)
                                           : (h >> 24) % RAM_PAGES;
                    if (((h >> 30) & 7) == 0)
                        e |= ((h >> 33) & 15) << 59; /* protection key */
                }
                e |= target << 12;
                memcpy(img + page * 4096 + idxs[k] * 8, &e, 8);
            }
        }
    }
    if (fmt == 2)
        build_image32(img, seed, r->sm32, sm_user);
    else if (fmt == 3)
        build_image_pae(img, seed, r->smpae, sm_user);
    for (unsigned root = 0; root < NROOTS && fmt >= 4; root++) {
        uint64_t e = ((uint64_t)root << 12) | E_P | E_RW | (sm_user ? E_US : 0);
        memcpy(img + root * 4096 + sm * 8, &e, 8);
    }
    size_t nrec = get(data, size, 11, 1) % 32;
    for (size_t i = 0; i < nrec; i++) {
        size_t off = HDR_SIZE + i * REC_SIZE;
        uint64_t page = get(data, size, off, 1) % RAM_PAGES;
        uint64_t index = get(data, size, off + 1, 2) % 512;
        unsigned steer = (unsigned)get(data, size, off + 3, 1);
        uint64_t v = get(data, size, off + 4, 8);
        if (steer & 1)
            v = (v & ~E_ADDR) | (((uint64_t)(steer >> 1) % RAM_PAGES) << 12);
        memcpy(img + page * 4096 + index * 8, &v, 8);
    }
}

static uint8_t ram_a[RAM_SIZE], ram_b[RAM_SIZE];

int
trap0e_run(const uint8_t *data, size_t size, const struct trap0e_opts *opts)
{
    if (!backend && pgm_soft_backend_create(8192, &backend) < 0)
        abort();
    pgm_soft_backend_fail_after(backend, -1);
    static struct run run;
    struct run *r = &run;
    memset(r, 0, sizeof(*r));
    t0x_begin();
    t0v_begin(NULL);
    r->opts = opts;
    r->prev = ram_a;
    r->now = ram_b;

    unsigned ctl = (unsigned)get(data, size, 0, 1);
    uint32_t pkru = (uint32_t)get(data, size, 1, 4);
    unsigned poolb = (unsigned)get(data, size, 5, 1);
    r->sm = 256 + (unsigned)get(data, size, 6, 1);
    if (r->sm == 511)
        r->sm = 510;
    r->sm32 = 512 + 2 * (unsigned)get(data, size, 6, 1);        /* 512..1022 */
    r->smpae = 3 + (unsigned)get(data, size, 6, 1) * 507 / 255; /* 3..510 */
    /* byte 15: the initial mode (bits 1:0: IA-32e, 32-bit, PAE, paging off;
     * bit 2 with paging off: real mode), which also picks the format of the
     * base tables (IA-32e tables with paging off) */
    unsigned mode0 = (unsigned)get(data, size, 15, 1);
    const unsigned fmts[4] = { 4, 2, 3, 4 }, modes[4] = { 0, 4, 2, 3 };
    unsigned fmt = fmts[mode0 & 3], smode = modes[mode0 & 3];
    if (smode == 3 && (mode0 & 4))
        smode = 5;
    struct fail_alloc fa = { .fail_at = UINT64_MAX };
    r->fa = &fa;

    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    if (smode != 0 && ((poolb >> 4) & 3) == 1)
        cfg.paging = PGM_PAGING_SHADOW_PAE;
    else if (smode != 0 && ((poolb >> 4) & 3) == 2)
        cfg.paging = PGM_PAGING_SHADOW_32;
    /* byte 5 bits 7:6: 1 EPT, 2 NPT - the nested engine instead (any mode) */
    const char *force = getenv("TRAP0E_NESTED");
    unsigned nest = force ? (unsigned)atoi(force) : (poolb >> 6) & 3;
    if (nest == 1 || nest == 2)
        cfg.paging = nest == 1 ? PGM_PAGING_EPT : PGM_PAGING_NPT;
    r->nested = cfg.paging == PGM_PAGING_EPT || cfg.paging == PGM_PAGING_NPT;
    r->npt = cfg.paging == PGM_PAGING_NPT;
    /*
     * Hardware checks guest entries against the host's MAXPHYADDR and walks
     * 4-level nested tables with GPA bits 47:0: a guest given more address
     * bits than that would alias (docs/nested.md). A consistent VMM gives
     * it the host's width, here the nested default.
     */
    if (r->nested) {
        struct pgm_nested_config nc;
        pgm_nested_config_init(&nc);
        cfg.features.maxphyaddr = nc.host_maxphyaddr;
    }
    r->legacy_host = cfg.paging == PGM_PAGING_SHADOW_PAE || cfg.paging == PGM_PAGING_SHADOW_32;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = backend;
    const uint32_t pools[4] = { 1, 96, 160, 0 };
    cfg.pool_pages = pools[poolb & 3];
    const uint32_t floods[4] = { 0, 1, 2, 8 };
    cfg.flood_threshold = floods[(poolb >> 2) & 3];
    if (opts->inject_failures) {
        cfg.allocator = (struct pgm_allocator){ .alloc = fa_alloc, .free = fa_free, .ctx = &fa };
        fa.fail_at = get(data, size, 12, 2);
        unsigned f = (unsigned)get(data, size, 14, 1);
        fa.sticky = f & 1;
        if ((f >> 1) != 127)
            pgm_soft_backend_fail_after(backend, (f >> 1) * 4);
    }

    size_t nrec = get(data, size, 11, 1) % 32;
    build_image(r->prev, data, size, fmt, ctl & 1, r, ctl & 128);

    struct pgm_vm *vm = NULL;
    int rc = pgm_vm_create(&cfg, &vm);
    if (rc < 0) {
        if (!opts->inject_failures)
            fail("pgm_vm_create failed");
        goto out;
    }
    r->vm = vm;
    r->vcpu = pgm_vcpu_get(vm, 0);
    rc = pgm_phys_add_ram(vm, 0, RAM_SIZE);
    if (rc == 0) /* an MMIO page without handler right above RAM: all-ones */
        rc = pgm_phys_add_mmio(vm, RAM_SIZE, 4096);
    if (rc == 0)
        rc = pgm_phys_write(vm, 0, r->prev, RAM_SIZE);
    if (rc != 0) {
        if (!opts->inject_failures || rc > 0)
            fail("guest RAM setup failed");
        goto out;
    }
    if (set_state(r, ctl, smode, 0, false) == PGM_RC_INJECT_GP && smode != 2)
        fail("initial state refused"); /* only PAE (reserved PDPTE bits) may */
    pgm_set_pkru(r->vcpu, pkru);
    if (!opts->inject_failures && smode != 2 && levels(r) != (smode >= 3 && smode != 4 ? 0 :
                                                            smode == 4 ? 2 : (ctl & 1) ? 5 : 4))
        fail("initial state not loaded");
    after_op(r, "setup");

    size_t off = HDR_SIZE + nrec * REC_SIZE;
    uint64_t counter = 0;
    while (off < size && counter < MAX_OPS) {
        unsigned code = data[off];
        /* low nibbles 9 and 10 are the handler / access-API families
         * (trap0e_handlers.c), 11 virtual handlers (trap0e_virt.c);
         * 12..15 alias 3..6 */
        unsigned kind = (code & 15) >= 9 && (code & 15) <= 11 ? code & 15 : (code & 15) % 9;
        unsigned fl = code >> 4;
        unsigned a0 = (unsigned)get(data, size, off + 1, 1), a1 = (unsigned)get(data, size, off + 2, 1);
        unsigned a2 = (unsigned)get(data, size, off + 3, 1), a3 = (unsigned)get(data, size, off + 4, 1);
        uint32_t sel = (uint32_t)get(data, size, off + 1, 3);
        if (getenv("TRAP0E_TRACE"))
            fprintf(stderr, "op %llu: kind %u flags %#x args %02x %02x %02x %02x\n",
                    (unsigned long long)counter, kind, fl, a0, a1, a2, a3);
        off += 5;
        counter++;
        tally.ops++;
        switch (kind) {
        case 0: { /* ACCESS */
            const uint32_t kinds[4] = { PGM_ACCESS_READ, PGM_ACCESS_WRITE, PGM_ACCESS_FETCH,
                                        PGM_ACCESS_READ };
            uint32_t access = kinds[fl & 3] | (fl & 4 ? PGM_ACCESS_USER : 0) |
                              (a3 & 4 ? PGM_ACCESS_AC : 0);
            uint64_t va = va_of(r, sel);
            uint64_t value = 0xa500000000000000ull | (counter << 16) | code;
            do_access(r, va, access, (size_t)1 << (a3 & 3), value);
            os_flush(r, a3 >> 4, va);
            break;
        }
        case 1: { /* PTE_WRITE */
            unsigned steer = (unsigned)get(data, size, off, 1);
            uint64_t v = get(data, size, off + 1, 8);
            off += 9;
            if (steer & 1)
                v = (v & ~E_ADDR) | (((uint64_t)(steer >> 1) % RAM_PAGES) << 12);
            uint64_t target = va_of(r, sel & ~(1u << 22));
            unsigned level = 1 + (fl & 3);
            if (level > 2 && levels(r) < 4)
                level = 2; /* 32-bit: 2 levels; PAE: the PDPT is not self-mapped */
            uint64_t eva = entry_va(r, target, level);
            /* flag bit 2: by an instruction libpgm emulates, the code at va(a3, ..) */
            if (!(fl & 4) || !emulated_write(r, va_of(r, (sel >> 8) | ((uint32_t)a3 << 16)), eva,
                                             v, fl & 8))
                do_access(r, eva, PGM_ACCESS_WRITE | (fl & 8 ? PGM_ACCESS_USER : 0), esize(r), v);
            /* A CPU may load any translation its present, accessed entries
             * give at any time (speculatively): from now until the next
             * invalidation, @target may translate through the value just
             * written even if it is written again without a flush. */
            struct pgm_walk nw;
            if (pgm_walk(r->vcpu, target, PGM_ACCESS_READ | PGM_ACCESS_NO_AD, &nw) == 0 &&
                nw.status == PGM_WALK_OK && (nw.entry[nw.last_level] & E_A)) {
                struct pgm_cpu_state st;
                pgm_get_cpu_state(r->vcpu, &st);
                hist_add(r, target, &nw, st.cr4 & PGM_CR4_PGE);
            }
            os_flush(r, a3 >> 4, target);
            break;
        }
        case 2: { /* SYNC_CR3 */
            uint64_t cr3 = (uint64_t)(a0 % NROOTS) << 12;
            if (a1 & 1)
                cr3 |= 1ull << 62;
            rc = pgm_sync_cr3(r->vcpu, cr3);
            if (rc == PGM_RC_INJECT_GP) {
                struct pgm_cpu_state st;
                pgm_get_cpu_state(r->vcpu, &st);
                if (!(a1 & 1) && (st.efer & PGM_EFER_LMA))
                    fail("a valid CR3 load raised #GP");
            } else if (api_ok(r, rc, "pgm_sync_cr3")) {
                if ((a1 & 1) && ia32e(r))
                    fail("a CR3 with bit 62 set loaded in IA-32e mode");
                hist_clear(r, true);
                cpu_flush(r, PGM_FLUSH_NONGLOBAL, 0);
                cpu_cr3_load(r);
            } else {
                hist_clear(r, false); /* failed half-way: assume anything */
                cpu_flush(r, PGM_FLUSH_ALL, 0); /* the guest's MOV CR3 happened */
                cpu_cr3_load(r);
            }
            after_op(r, "sync_cr3");
            break;
        }
        case 3: { /* INVLPG */
            uint64_t va = va_of(r, sel);
            api_ok(r, pgm_invlpg(r->vcpu, va), "pgm_invlpg");
            cpu_flush(r, PGM_FLUSH_GVA, va);
            hist_drop_va(r, va);
            after_op(r, "invlpg");
            break;
        }
        case 4:
            api_ok(r, pgm_flush_tlb(r->vcpu, a0 & 1), "pgm_flush_tlb");
            cpu_flush(r, (a0 & 1) ? PGM_FLUSH_ALL : PGM_FLUSH_NONGLOBAL, 0);
            hist_clear(r, !(a0 & 1));
            after_op(r, "flush_tlb");
            break;
        case 5: {
            /* a1 bits 1:0 mode (IA-32e, IA-32e, PAE, paging off); with
             * paging off, bit 3: 32-bit paging instead, else bit 4: real mode */
            unsigned m = a1 & 3;
            if (m == 3 && (a1 & 8))
                m = 4;
            else if (m == 3 && (a1 & 16))
                m = 5;
            set_state(r, a0, m, a2 % NROOTS, a1 & 4);
            after_op(r, "set_cpu_state");
            break;
        }
        case 6:
            pgm_set_pkru(r->vcpu, (uint32_t)get(data, size, off - 4, 4));
            after_op(r, "set_pkru");
            break;
        case 7:
            handler_op(r, a0, a1, a2);
            after_op(r, "handler op");
            break;
        case 9:
        case 10: {
            struct t0x_ctx c = { .vm = r->vm, .vcpu = r->vcpu, .ram_size = RAM_SIZE,
                                 .mmio_gpa = RAM_SIZE, .data_first = DATA_FIRST,
                                 .inject_failures = opts->inject_failures };
            if (kind == 9)
                t0x_handler_op(&c, a0, a1, a3, va_of(r, (sel >> 8) | ((uint32_t)a3 << 16)),
                               va_of(r, a2 | (a3 << 8) | (a0 << 16)));
            else
                t0x_gva_op(&c, fl, a0, a3, va_of(r, sel));
            ext_after(r, &c, kind == 9 ? "handler/MMIO op" : "gva op");
            break;
        }
        case 11: { /* virtual handlers, on the vCPU's address space or another root's */
            struct pgm_cpu_state st;
            pgm_get_cpu_state(r->vcpu, &st);
            uint64_t cr3 = (a2 & 1) ? st.cr3 : (uint64_t)((a2 >> 1) % NROOTS) << 12;
            t0v_op(r->vm, a0, a1, va_of(r, sel), cr3, opts->inject_failures, r->nested);
            after_op(r, "virtual handler op");
            break;
        }
        case 8:
            if (!opts->inject_failures)
                break;
            if (a0 & 2) {
                pgm_soft_backend_fail_after(backend, -1);
                fa.fail_at = UINT64_MAX;
            } else if (a0 & 1) {
                pgm_soft_backend_fail_after(backend, a1 % 16);
            } else {
                fa.fail_at = fa.count + a1 % 16;
                fa.sticky = a1 & 16;
            }
            break;
        }
    }

out:
    if (vm && getenv("TRAP0E_STATS")) {
        struct pgm_stats st;
        pgm_stats(vm, &st);
        fprintf(stderr, "ops %llu (mode %s): ok %llu strict %llu stale, pf %llu, gp %llu, "
                "errors %llu; syncs %llu zaps %llu finished %llu evictions %llu unshadowed %llu\n",
                (unsigned long long)tally.ops, pgm_guest_mode_name(pgm_guest_mode(r->vcpu)),
                (unsigned long long)tally.ok_strict,
                (unsigned long long)tally.ok_stale, (unsigned long long)tally.pf,
                (unsigned long long)tally.gp,
                (unsigned long long)tally.errors, (unsigned long long)st.shadow_syncs,
                (unsigned long long)st.shadow_zaps, (unsigned long long)st.shadow_finished,
                (unsigned long long)st.pool_evictions, (unsigned long long)st.shadow_unshadowed);
        memset(&tally, 0, sizeof(tally));
        t0x_print_stats();
        t0v_print_stats();
    }
    pgm_vm_destroy(vm);
    pgm_soft_backend_fail_after(backend, -1);
    if (pgm_soft_backend_pages_in_use(backend) || pgm_soft_backend_blocks_in_use(backend))
        fail("pgm_vm_destroy left soft-backend pages or blocks allocated");
    return 0;
}
