/* SPDX-License-Identifier: MIT */
/*
 * Virtual (guest-linear) handlers on a shadow VM with hand-built 4-level
 * tables, driven through the soft MMU and pgm_trap0e: the life cycle of the
 * seed document (register -> read synced read-only -> write calls the
 * handler -> the guest remaps -> invalidation -> deregister), ALL and
 * HYPERVISOR handlers, address spaces, aliases, remaps libpgm sees only at
 * the next fault, and pgm_audit after every step. Expected values come from
 * the tables below.
 *
 * Guest layout (PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000):
 *   VA 0x1000 -> 0x10000   VA 0x2000 -> 0x11000   (the handler covers these two)
 *   VA 0x5000 -> the PT (supervisor rw): the guest edits its PTEs there
 *   VA 0x6000 -> 0x10000   (an alias of VA 0x1000's page)
 *   VA 0x7000 -> 0x14000   code: mov [rdi], rax
 *   VA 0x8000..0xf000 -> 0x18000.. (other data pages, for the unsync test)
 * A second address space, PML4 0x20000, shares the PDPT (same mappings).
 */
#include <errno.h>
#include <string.h>

#include "pgm/access.h"
#include "tests/unit/fixture.h"

#define AS1 0x1000ull
#define AS2 0x20000ull

struct calls {
    unsigned n;
    pgm_gva_t gva;
    pgm_gpa_t gpa;
    size_t size;
    bool write;
    uint64_t value;                  /* first 8 bytes written */
    enum pgm_handler_result answer;  /* what the callback returns */
    uint8_t fill;                    /* a HANDLED read returns this byte */
    unsigned inval;
    pgm_gva_t inval_gva;
    pgm_gpa_t inval_old, inval_new;
};

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    struct calls c;
};

static void
audit(struct env *e)
{
    fixture_audit_vm(e->vm);
}

static void
poke(struct env *e, uint64_t gpa, uint64_t v)
{
    fixture_put64(e->vm, gpa, v);
}

static uint64_t
peek(struct env *e, uint64_t gpa)
{
    uint64_t v = 0;
    pgm_phys_read(e->vm, gpa, &v, 8);
    return v;
}

static enum pgm_handler_result
on_access(struct pgm_vcpu *vcpu, pgm_gva_t gva, pgm_gpa_t gpa, void *buf, size_t size, bool write,
          void *user)
{
    (void)vcpu;
    struct calls *c = user;
    c->n++;
    c->gva = gva;
    c->gpa = gpa;
    c->size = size;
    c->write = write;
    c->value = 0;
    if (write && buf)
        memcpy(&c->value, buf, size < 8 ? size : 8);
    if (!write && buf && c->answer == PGM_HANDLER_HANDLED)
        memset(buf, c->fill, size);
    return c->answer;
}

static void
on_invalidate(struct pgm_vm *vm, pgm_gva_t gva, pgm_gpa_t old_gpa, pgm_gpa_t new_gpa, void *user)
{
    (void)vm;
    struct calls *c = user;
    c->inval++;
    c->inval_gva = gva;
    c->inval_old = old_gpa;
    c->inval_new = new_gpa;
}

static int
env_setup(void **state)
{
    struct env *e = test_calloc(1, sizeof(*e));
    assert_int_equal(pgm_soft_backend_create(1u << 14, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = PGM_PAGING_SHADOW_AMD64;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16u << 20), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    poke(e, 0x1000, 0x2007);
    poke(e, 0x20000, 0x2007);          /* AS2's PML4: the same PDPT */
    poke(e, 0x2000, 0x3007);
    poke(e, 0x3000, 0x4007);
    poke(e, 0x4008, 0x10007);          /* VA 0x1000 */
    poke(e, 0x4010, 0x11007);          /* VA 0x2000 */
    poke(e, 0x4028, 0x4003);           /* VA 0x5000 -> the PT */
    poke(e, 0x4030, 0x10007);          /* VA 0x6000: alias of 0x10000 */
    poke(e, 0x4038, 0x14007);          /* VA 0x7000: code */
    for (unsigned i = 8; i < 16; i++)
        poke(e, 0x4000 + 8 * i, (0x10000 + 0x1000 * i) | 7); /* VA 0x8000.. -> 0x18000.. */
    poke(e, 0x10000, 0x1111111111111111ull);
    poke(e, 0x11000, 0x2222222222222222ull);
    const uint8_t code[] = { 0x48, 0x89, 0x07 }; /* mov [rdi], rax */
    assert_int_equal(pgm_phys_write(e->vm, 0x14000, code, sizeof(code)), 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = AS1 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    e->c.answer = PGM_HANDLER_DEFAULT;
    *state = e;
    return 0;
}

static int
env_teardown(void **state)
{
    struct env *e = *state;
    fixture_vm_teardown(e->vm, e->sb);
    test_free(e);
    return 0;
}

/* One access through the soft MMU; audit after it. */
static struct pgm_fault_out
access(struct env *e, uint64_t va, uint32_t acc, void *buf, size_t n)
{
    return fixture_soft_access(e->vcpu, e->vm, va, acc, buf, n);
}

static uint64_t
read64(struct env *e, uint64_t va)
{
    uint64_t v = 0;
    struct pgm_fault_out o = access(e, va, PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    return v;
}

static void
write64(struct env *e, uint64_t va, uint64_t v)
{
    struct pgm_fault_out o = access(e, va, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
}

/* The guest rewrites one of its PTEs through its self-map (VA 0x5000). */
static void
guest_set_pte(struct env *e, unsigned index, uint64_t pte)
{
    struct pgm_fault_out o = access(e, 0x5000 + 8 * index, PGM_ACCESS_WRITE, &pte, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
}

static void
reg(struct env *e, enum pgm_virt_handler_kind kind, uint64_t cr3, pgm_gva_t gva, uint64_t size)
{
    struct pgm_virt_handler h = { .kind = kind, .cr3 = cr3, .gva = gva, .size = size,
                                  .fn = on_access, .invalidate = on_invalidate, .user = &e->c };
    assert_int_equal(pgm_virt_handler_register(e->vm, &h), 0);
    audit(e);
}

static pgm_gpa_t
assoc(struct env *e, uint64_t cr3, pgm_gva_t gva)
{
    pgm_gpa_t gpa = 0;
    assert_int_equal(pgm_virt_handler_gpa(e->vm, cr3, gva, &gpa), 0);
    return gpa;
}

static struct pgm_shadow_info
lookup(struct env *e, pgm_gva_t gva)
{
    struct pgm_shadow_info si;
    assert_int_equal(pgm_shadow_lookup(e->vcpu, gva, &si), 0);
    return si;
}

static bool
shadow_writable(struct env *e, pgm_gva_t gva)
{
    struct pgm_shadow_info si = lookup(e, gva);
    return si.present && (si.entry[1] & 2);
}

static void
test_write_handler_life_cycle(void **state)
{
    struct env *e = *state;
    /* Before: the pages are mapped (and writable once written). */
    write64(e, 0x1000, 0x1111111111111111ull);
    write64(e, 0x2000, 0x2222222222222222ull);
    write64(e, 0x6000, 0x1111111111111111ull);
    assert_true(shadow_writable(e, 0x1000) && shadow_writable(e, 0x2000) &&
                shadow_writable(e, 0x6000));
    write64(e, 0x8000, 1); /* an unrelated page */
    struct pgm_stats s0, s1;
    pgm_stats(e->vm, &s0);

    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x1000, 0x2000);
    /* Exactly the three entries mapping 0x10000 and 0x11000 went; nothing else. */
    pgm_stats(e->vm, &s1);
    assert_int_equal(s1.shadow_zaps - s0.shadow_zaps, 3);
    assert_int_equal(s1.pool_evictions, s0.pool_evictions);
    assert_true(shadow_writable(e, 0x8000));
    assert_true(assoc(e, AS1, 0x1000) == 0x10000 && assoc(e, AS1, 0x2000) == 0x11000);
    assert_int_equal(e->c.inval, 0); /* the first resolution is no remap */

    /* Reads do not call a WRITE handler; the page is synced read-only. */
    assert_true(read64(e, 0x1000) == 0x1111111111111111ull);
    assert_int_equal(e->c.n, 0);
    assert_true(lookup(e, 0x1000).present && !shadow_writable(e, 0x1000));

    /* A write calls it with the linear and physical address; DEFAULT lands it. */
    write64(e, 0x1008, 0xabcull);
    assert_int_equal(e->c.n, 1);
    assert_true(e->c.gva == 0x1008 && e->c.gpa == 0x10008 && e->c.size == 8 && e->c.write);
    assert_true(e->c.value == 0xabc && peek(e, 0x10008) == 0xabc);
    assert_false(shadow_writable(e, 0x1000));
    /* HANDLED: the handler owns the write, memory keeps its value. */
    e->c.answer = PGM_HANDLER_HANDLED;
    write64(e, 0x2010, 0x77);
    assert_int_equal(e->c.n, 2);
    assert_true(e->c.gva == 0x2010 && e->c.gpa == 0x11010 && e->c.value == 0x77);
    assert_true(peek(e, 0x11010) == 0);
    /* EXIT: the access is described to the embedder. */
    e->c.answer = PGM_HANDLER_EXIT;
    uint64_t v = 0x99;
    struct pgm_fault_out o = access(e, 0x2018, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_EXIT);
    assert_int_equal(o.exit_reason, PGM_EXIT_HANDLER);
    assert_true(o.exit_gpa == 0x11018 && o.exit_write && peek(e, 0x11018) == 0);
    e->c.answer = PGM_HANDLER_DEFAULT;

    /* The alias is another linear address: no call, the write lands. */
    unsigned n = e->c.n;
    write64(e, 0x6010, 0x5151);
    assert_int_equal(e->c.n, n);
    assert_true(peek(e, 0x10010) == 0x5151);

    /* The guest remaps VA 0x1000 to 0x12000: libpgm sees the PTE write. */
    guest_set_pte(e, 1, 0x12007);
    assert_int_equal(e->c.inval, 1);
    assert_true(e->c.inval_gva == 0x1000 && e->c.inval_old == 0x10000 &&
                e->c.inval_new == 0x12000);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    audit(e);
    assert_true(assoc(e, AS1, 0x1000) == 0x12000);
    write64(e, 0x1020, 0x4242);
    assert_true(e->c.n == n + 1 && e->c.gpa == 0x12020 && peek(e, 0x12020) == 0x4242);
    /* The old page is free again: its alias becomes writable at its next write. */
    write64(e, 0x6018, 1);
    assert_int_equal(e->c.n, n + 1);
    assert_true(shadow_writable(e, 0x6000));

    /* Unmapped: invalidation to "none", then a guest #PF, no call. */
    guest_set_pte(e, 1, 0);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    assert_true(e->c.inval == 2 && e->c.inval_old == 0x12000 && e->c.inval_new == PGM_GPA_NONE);
    v = 1;
    o = access(e, 0x1000, PGM_ACCESS_WRITE | PGM_ACCESS_USER, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_int_equal(o.vector, 14);
    assert_int_equal(o.error_code, PGM_PFEC_W | PGM_PFEC_U);
    assert_int_equal(e->c.n, n + 1);

    /* Deregistered: no calls, and no flush of anything else. */
    pgm_stats(e->vm, &s0);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x1000), 0);
    audit(e);
    pgm_stats(e->vm, &s1);
    assert_int_equal(s1.shadow_zaps, s0.shadow_zaps); /* widening is lazy */
    write64(e, 0x2000, 5);
    assert_int_equal(e->c.n, n + 1);
    assert_true(shadow_writable(e, 0x2000) && peek(e, 0x11000) == 5);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x1000), -ENOENT);
}

static void
test_all_handler(void **state)
{
    struct env *e = *state;
    assert_true(read64(e, 0x1000) == 0x1111111111111111ull);
    reg(e, PGM_VIRT_HANDLER_ALL, AS1, 0x1000, 0x1000);
    assert_false(lookup(e, 0x1000).present);
    /* A read the handler answers. */
    e->c.answer = PGM_HANDLER_HANDLED;
    e->c.fill = 0x5a;
    assert_true(read64(e, 0x1008) == 0x5a5a5a5a5a5a5a5aull);
    assert_true(e->c.n == 1 && !e->c.write && e->c.gva == 0x1008 && e->c.gpa == 0x10008);
    assert_false(lookup(e, 0x1000).present);
    /* DEFAULT: memory answers, after the call. */
    e->c.answer = PGM_HANDLER_DEFAULT;
    assert_true(read64(e, 0x1000) == 0x1111111111111111ull);
    assert_int_equal(e->c.n, 2);
    write64(e, 0x1000, 3);
    assert_true(e->c.n == 3 && e->c.write && peek(e, 0x10000) == 3);
    assert_false(lookup(e, 0x1000).present);
    /* The neighbour is not covered: mapped as usual, no call. */
    assert_true(read64(e, 0x2000) == 0x2222222222222222ull);
    assert_int_equal(e->c.n, 3);
    /* The alias reads the page without the handler, through libpgm. */
    assert_true(read64(e, 0x6000) == 3);
    assert_int_equal(e->c.n, 3);
    assert_false(lookup(e, 0x6000).present);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x1000), 0);
    audit(e);
    assert_true(read64(e, 0x1000) == 3);
    assert_int_equal(e->c.n, 3);
    assert_true(lookup(e, 0x1000).present);
}

/* An emulated guest instruction (pgm_trap0e) reaches the handler. */
static void
test_trap0e_emulates_into_handler(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x1000, 0x1000);
    struct pgm_regs regs = { .rip = 0x7000, .code_bits = 64 };
    regs.gpr[PGM_RDI] = 0x1030;
    regs.gpr[PGM_RAX] = 0xfeedface;
    struct pgm_fault_out o;
    /* A read fault: the page is synced read-only, the guest resumes. */
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x1030, &regs, &o), 0);
    audit(e);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_int_equal(e->c.n, 0);
    assert_true(lookup(e, 0x1000).present && !shadow_writable(e, 0x1000));
    /* The write fault on the read-only entry: emulated into the handler. */
    assert_int_equal(pgm_trap0e(e->vcpu, PGM_PFEC_W | PGM_PFEC_P, 0x1030, &regs, &o), 0);
    audit(e);
    assert_int_equal(o.result, PGM_FAULT_EMULATED);
    assert_true(regs.rip == 0x7003);
    assert_true(e->c.n == 1 && e->c.gva == 0x1030 && e->c.gpa == 0x10030 && e->c.size == 8 &&
                e->c.value == 0xfeedface);
    assert_true(peek(e, 0x10030) == 0xfeedface);
}

static void
test_hypervisor_handler(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_HYPERVISOR, AS1, 0x400000, 0x10000);
    struct pgm_regs regs = { .rip = 0x7000, .code_bits = 64 };
    struct pgm_fault_out o;
    e->c.answer = PGM_HANDLER_HANDLED;
    assert_int_equal(pgm_trap0e(e->vcpu, PGM_PFEC_W, 0x400010, &regs, &o), 0);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_true(e->c.n == 1 && e->c.gva == 0x400010 && e->c.gpa == PGM_GPA_NONE &&
                e->c.size == 0 && e->c.write);
    /* DEFAULT: the guest's own tables decide (not mapped: #PF to the guest). */
    e->c.answer = PGM_HANDLER_DEFAULT;
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x40f000, &regs, &o), 0);
    assert_int_equal(o.result, PGM_FAULT_INJECT);
    assert_true(o.vector == 14 && o.address == 0x40f000 && o.error_code == 0);
    assert_int_equal(e->c.n, 2);
    /* Only the #PF path consults it; outside the range nothing is called. */
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x410000, &regs, &o), 0);
    assert_int_equal(e->c.n, 2);
    /* EXIT. */
    e->c.answer = PGM_HANDLER_EXIT;
    assert_int_equal(pgm_trap0e(e->vcpu, 0, 0x400000, &regs, &o), 0);
    assert_true(o.result == PGM_FAULT_EXIT && o.exit_reason == PGM_EXIT_HANDLER);
    audit(e);
}

static void
test_address_spaces(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x1000, 0x1000);
    /* AS2 maps the same page at the same address, but it is not covered there. */
    assert_int_equal(pgm_sync_cr3(e->vcpu, AS2), 0);
    audit(e);
    write64(e, 0x1000, 8);
    assert_int_equal(e->c.n, 0);
    assert_true(peek(e, 0x10000) == 8);
    assert_false(shadow_writable(e, 0x1000)); /* the page is still watched for AS1 */
    /* A handler for AS2 registered while no vCPU runs AS1... */
    assert_int_equal(pgm_sync_cr3(e->vcpu, AS1), 0);
    struct calls other = { .answer = PGM_HANDLER_DEFAULT };
    struct pgm_virt_handler h = { .kind = PGM_VIRT_HANDLER_WRITE, .cr3 = AS2, .gva = 0x2000,
                                  .size = 0x1000, .fn = on_access, .user = &other };
    assert_int_equal(pgm_virt_handler_register(e->vm, &h), 0);
    audit(e);
    /* ...is resolved at the first load of its CR3. */
    assert_true(assoc(e, AS2, 0x2000) == PGM_GPA_NONE);
    write64(e, 0x2000, 1); /* AS1: not covered */
    assert_int_equal(other.n, 0);
    assert_int_equal(pgm_sync_cr3(e->vcpu, AS2 | 0x18), 0); /* PWT/PCD bits: the same space */
    audit(e);
    assert_true(assoc(e, AS2, 0x2000) == 0x11000);
    write64(e, 0x2008, 2);
    assert_true(other.n == 1 && other.gpa == 0x11008);
    /* The ranges of different spaces may overlap; of one space they may not. */
    h.gva = 0x1000;
    h.size = 0x2000;
    assert_int_equal(pgm_virt_handler_register(e->vm, &h), -EEXIST);
    h.cr3 = AS1;
    assert_int_equal(pgm_virt_handler_register(e->vm, &h), -EEXIST);
    h.gva = 0x3000;
    h.size = 0x1000;
    assert_int_equal(pgm_virt_handler_register(e->vm, &h), 0);
    audit(e);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS2, 0x2000), 0);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x3000), 0);
    audit(e);
}

/*
 * A remap libpgm does not see when it happens (the PT went out of sync and
 * the guest writes it directly): the next fault on the covered page walks
 * to the new page and finds the association stale before mapping anything.
 */
static void
test_remap_seen_at_fault(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x1000, 0x1000);
    guest_set_pte(e, 1, 0); /* seen: association "none" */
    assert_true(e->c.inval == 1 && e->c.inval_new == PGM_GPA_NONE);
    /* More PTE writes until the PT goes out of sync (writable to the guest). */
    struct pgm_stats s;
    for (unsigned i = 8; i < 16; i++) {
        pgm_stats(e->vm, &s);
        if (s.shadow_unsyncs)
            break;
        guest_set_pte(e, i, (0x10000 + 0x1000 * i) | 5); /* read-only now: a change */
    }
    pgm_stats(e->vm, &s);
    assert_true(s.shadow_unsyncs >= 1);
    unsigned inval = e->c.inval;
    guest_set_pte(e, 1, 0x13007); /* a direct write now: libpgm does not see it */
    assert_int_equal(e->c.inval, inval);
    assert_true(assoc(e, AS1, 0x1000) == PGM_GPA_NONE);
    /* The guest uses the new mapping (nothing was cached for it). */
    write64(e, 0x1040, 0x31);
    assert_true(e->c.inval == inval + 1 && e->c.inval_old == PGM_GPA_NONE &&
                e->c.inval_new == 0x13000);
    assert_true(e->c.n == 1 && e->c.gpa == 0x13040 && peek(e, 0x13040) == 0x31);
    assert_false(shadow_writable(e, 0x1000));
}

/* The VMM rewrites a guest PTE (pgm_phys_write): seen at once. */
static void
test_vmm_table_write(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_ALL, AS1, 0x1000, 0x2000);
    poke(e, 0x4010, 0x15007); /* VA 0x2000 -> 0x15000 */
    audit(e);
    assert_true(e->c.inval == 1 && e->c.inval_gva == 0x2000 && e->c.inval_old == 0x11000 &&
                e->c.inval_new == 0x15000);
    assert_true(assoc(e, AS1, 0x2000) == 0x15000);
    /* A table on the path: the PD entry goes, both pages are unmapped. */
    poke(e, 0x3000, 0);
    audit(e);
    assert_int_equal(e->c.inval, 3);
    assert_true(assoc(e, AS1, 0x1000) == PGM_GPA_NONE && assoc(e, AS1, 0x2000) == PGM_GPA_NONE);
    poke(e, 0x3000, 0x4007);
    audit(e);
    assert_int_equal(e->c.inval, 5);
    assert_true(assoc(e, AS1, 0x1000) == 0x10000);
}

/* A CR3 load or a mode change re-resolves the covered pages. */
static void
test_cr3_and_mode_change(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x1000, 0x1000);
    assert_int_equal(pgm_sync_cr3(e->vcpu, AS2), 0);
    /* While AS1 does not run, its PTE changes behind libpgm's back (no
     * vCPU has it loaded: the change is not a table write libpgm finishes). */
    poke(e, 0x4008, 0x16007);
    assert_int_equal(pgm_sync_cr3(e->vcpu, AS1), 0);
    audit(e);
    assert_true(assoc(e, AS1, 0x1000) == 0x16000);
    write64(e, 0x1000, 4);
    assert_true(e->c.n == 1 && e->c.gpa == 0x16000);
    /* Paging off: no address space is covered. */
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE, .cr3 = AS1 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    audit(e);
    uint64_t v = 9;
    struct pgm_fault_out o = access(e, 0x16000, PGM_ACCESS_WRITE, &v, 8);
    assert_int_equal(o.result, PGM_FAULT_RESUME);
    assert_int_equal(e->c.n, 1);
    assert_true(peek(e, 0x16000) == 9);
}

static void
test_register_errors(void **state)
{
    struct env *e = *state;
    struct pgm_virt_handler h = { .kind = PGM_VIRT_HANDLER_WRITE, .cr3 = AS1, .gva = 0x1000,
                                  .size = 0x1000, .fn = on_access, .user = &e->c };
    struct pgm_virt_handler b = h;
    b.gva = 0x1800;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b = h;
    b.size = 0;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b.size = 0x1234;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b.size = (1ull << 30) + 0x1000;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b = h;
    b.fn = NULL;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b = h;
    b.kind = (enum pgm_virt_handler_kind)0;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL);
    b = h;
    b.gva = ~0xfffull;
    b.size = 0x2000;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), -EINVAL); /* wraps */
    assert_int_equal(pgm_virt_handler_register(NULL, &h), -EINVAL);
    assert_int_equal(pgm_virt_handler_register(e->vm, NULL), -EINVAL);
    pgm_gpa_t gpa;
    assert_int_equal(pgm_virt_handler_gpa(e->vm, AS1, 0x1000, &gpa), -ENOENT);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x1000), -ENOENT);
    /* A HYPERVISOR handler keeps no association. */
    b = h;
    b.kind = PGM_VIRT_HANDLER_HYPERVISOR;
    assert_int_equal(pgm_virt_handler_register(e->vm, &b), 0);
    assert_int_equal(pgm_virt_handler_gpa(e->vm, AS1, 0x1000, &gpa), -ENOENT);
    assert_int_equal(pgm_virt_handler_deregister(e->vm, AS1, 0x1000), 0);
    audit(e);

    /* Not a shadow VM. */
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    struct pgm_vm *vm;
    assert_int_equal(pgm_vm_create(&cfg, &vm), 0);
    assert_int_equal(pgm_virt_handler_register(vm, &h), -EOPNOTSUPP);
    pgm_vm_destroy(vm);
}

/* A covered page whose RAM range is removed and added again. */
static void
test_range_removed_and_added(void **state)
{
    struct env *e = *state;
    assert_int_equal(pgm_phys_add_ram(e->vm, 32u << 20, 1u << 20), 0);
    poke(e, 0x4048, (32u << 20) | 7); /* VA 0x9000 -> 32 MiB */
    reg(e, PGM_VIRT_HANDLER_WRITE, AS1, 0x9000, 0x1000);
    assert_true(assoc(e, AS1, 0x9000) == 32u << 20);
    assert_int_equal(pgm_phys_remove(e->vm, 32u << 20), 0);
    audit(e);
    assert_int_equal(pgm_phys_add_ram(e->vm, 32u << 20, 1u << 20), 0);
    audit(e);
    /* Counted again: the write reaches the handler. */
    write64(e, 0x9000, 6);
    assert_true(e->c.n == 1 && e->c.gpa == 32u << 20);
    assert_false(shadow_writable(e, 0x9000));
}

/* The VMM's guest-virtual accesses see virtual handlers; the simple ones do not. */
static void
test_gva_accesses(void **state)
{
    struct env *e = *state;
    reg(e, PGM_VIRT_HANDLER_ALL, AS1, 0x2000, 0x1000);
    uint64_t v = 0x1234;
    struct pgm_gva_fault f;
    /* A span over VA 0x1ffc..0x2003: only its second piece is covered. */
    assert_int_equal(pgm_write_gva(e->vcpu, 0x1ffc, &v, 8, 0, PGM_ORIGIN_GUEST, &f), 0);
    audit(e);
    assert_true(e->c.n == 1 && e->c.write && e->c.gva == 0x2000 && e->c.gpa == 0x11000 &&
                e->c.size == 4 && e->c.value == 0);
    assert_true(peek(e, 0x10ffc) >> 32 == 0 && (uint32_t)peek(e, 0x10ffc) == 0x1234);
    e->c.answer = PGM_HANDLER_HANDLED;
    e->c.fill = 0xee;
    uint64_t r = 0;
    assert_int_equal(pgm_read_gva(e->vcpu, 0x2010, &r, 8, 0, PGM_ORIGIN_GUEST, &f), 0);
    assert_true(e->c.n == 2 && r == 0xeeeeeeeeeeeeeeeeull);
    assert_int_equal(pgm_read_gva_simple(e->vcpu, 0x2000, &r, 8, 0, &f), 0);
    assert_int_equal(e->c.n, 2);
    assert_true(r == 0x2222222200000000ull); /* the write's upper half landed (DEFAULT) */
    audit(e);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)
    const struct CMUnitTest tests[] = {
        T(test_write_handler_life_cycle), T(test_all_handler),
        T(test_trap0e_emulates_into_handler), T(test_hypervisor_handler),
        T(test_address_spaces), T(test_remap_seen_at_fault), T(test_vmm_table_write),
        T(test_cr3_and_mode_change), T(test_register_errors), T(test_range_removed_and_added),
        T(test_gva_accesses),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
