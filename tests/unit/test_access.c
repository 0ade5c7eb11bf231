/* SPDX-License-Identifier: MIT */
/*
 * include/pgm/access.h: origin tags seen by handlers, the simple variants
 * (no handler called, MMIO all-ones / -ENODEV, dirty logs still record,
 * shadows still coherent), and guest-virtual accesses (faults with the
 * guest's error code and nothing accessed, page crossing, A/D, 4 GiB wrap,
 * spans longer than the translations kept, handler exits part way), on a
 * VM without paging hardware and on a shadow VM with pgm_audit after every
 * step. Expected values come from the hand-built tables below.
 *
 * Guest tables (as tests/unit/test_shadow.c; PML4 0x1000, PDPT 0x2000,
 * PD 0x3000, PT 0x4000, PT2 0x5000):
 *   VA 0x1000 -> 0x10000 (user rw), VA 0x2000 -> 0x11000 (user read-only,
 *   A clear), VA 0x5000 -> the PT 0x4000 itself (supervisor rw), VA 0 not
 *   present; VA 0x400000 + i * 0x1000 -> 0x800000 + i * 0x1000 for i < 19
 *   (PT2), i = 19 not present.
 */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

#define SPAN_PAGES 20u
#define VA_SPAN    0x400000ull
#define GPA_SPAN   0x800000ull

struct env {
    struct pgm_soft_backend *sb;
    struct pgm_vm *vm;
    struct pgm_vcpu *vcpu;
    enum pgm_paging_hw paging;
};

static void
audit(struct env *e)
{
    if (e->vm)
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
    assert_int_equal(pgm_phys_read_simple(e->vm, gpa, &v, 8), 0);
    return v;
}

static struct env *
env_new(enum pgm_paging_hw paging)
{
    struct env *e = test_calloc(1, sizeof(*e));
    e->paging = paging;
    assert_int_equal(pgm_soft_backend_create(1u << 14, &e->sb), 0);
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.paging = paging;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = e->sb;
    assert_int_equal(pgm_vm_create(&cfg, &e->vm), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0, 16u << 20), 0);
    e->vcpu = pgm_vcpu_get(e->vm, 0);
    poke(e, 0x1000, 0x2007);
    poke(e, 0x2000, 0x3007);
    poke(e, 0x3000, 0x4007);
    poke(e, 0x3010, 0x5007);            /* PD[2]: VA 0x400000.. -> PT2 */
    poke(e, 0x4008, 0x10007);           /* VA 0x1000 */
    poke(e, 0x4010, 0x11005);           /* VA 0x2000: read-only */
    poke(e, 0x4028, 0x4003);            /* VA 0x5000 -> the PT (supervisor rw) */
    for (unsigned i = 0; i + 1 < SPAN_PAGES; i++)
        poke(e, 0x5000 + i * 8, (GPA_SPAN + i * 0x1000ull) | 0x67);
    poke(e, 0x10000, 0x1122334455667788ull);
    poke(e, 0x11000, 0x99aabbccddeeff00ull);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PAE, .efer = PGM_EFER_LME | PGM_EFER_NXE,
                                .cr3 = 0x1000 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    return e;
}

static int
setup_none(void **state)
{
    *state = env_new(PGM_PAGING_NONE);
    return 0;
}

static int
setup_shadow(void **state)
{
    *state = env_new(PGM_PAGING_SHADOW_AMD64);
    return 0;
}

static int
setup_shadow32(void **state)
{
    *state = env_new(PGM_PAGING_SHADOW_32);
    return 0;
}

static int
setup_shadow_pae(void **state)
{
    *state = env_new(PGM_PAGING_SHADOW_PAE);
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    fixture_vm_teardown(e->vm, e->sb);
    test_free(e);
    return 0;
}

/* ---- A recording handler ---------------------------------------------------- */

struct rec {
    unsigned calls;
    struct pgm_vcpu *vcpu;
    enum pgm_access_origin origin;
    pgm_gpa_t gpa;
    size_t size;
    bool write;
    enum pgm_handler_result answer;
    pgm_gpa_t exit_at; /* answer EXIT for an access starting here (if nonzero) */
};

static enum pgm_handler_result
rec_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
       enum pgm_access_origin origin, void *user)
{
    struct rec *r = user;
    r->calls++;
    r->vcpu = vcpu;
    r->origin = origin;
    r->gpa = gpa;
    r->size = size;
    r->write = write;
    if (r->exit_at && gpa == r->exit_at)
        return PGM_HANDLER_EXIT;
    if (!write && r->answer == PGM_HANDLER_HANDLED)
        memset(buf, 0xaa, size);
    return r->answer;
}

static void
reg(struct env *e, enum pgm_handler_kind kind, pgm_gpa_t gpa, uint64_t size, struct rec *r)
{
    struct pgm_phys_handler h = { .kind = kind, .gpa = gpa, .size = size, .fn = rec_fn,
                                  .user = r };
    assert_int_equal(pgm_handler_register(e->vm, &h), 0);
}

/* ---- Origin tags -------------------------------------------------------------- */

static void
test_origin_tags(void **state)
{
    struct env *e = *state;
    struct rec r = { .answer = PGM_HANDLER_DEFAULT };
    reg(e, PGM_HANDLER_ALL, 0x10000, 0x1000, &r);
    uint64_t v = 0;
    assert_int_equal(pgm_phys_read(e->vm, 0x10008, &v, 8), 0);
    assert_int_equal(r.origin, PGM_ORIGIN_PHYS_API);
    assert_null(r.vcpu);
    assert_int_equal(pgm_phys_read_origin(e->vm, 0x10000, &v, 8, PGM_ORIGIN_DMA), 0);
    assert_int_equal(r.origin, PGM_ORIGIN_DMA);
    assert_null(r.vcpu);
    assert_true(v == 0x1122334455667788ull);
    v = 5;
    assert_int_equal(pgm_phys_write_origin(e->vm, 0x10010, &v, 4, PGM_ORIGIN_GUEST), 0);
    assert_int_equal(r.origin, PGM_ORIGIN_GUEST);
    assert_true(r.write && r.gpa == 0x10010 && r.size == 4);
    assert_int_equal(r.calls, 3);
    /* guest-virtual: the handler sees the vCPU whose paging translated it */
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1008, &v, 8, 0, PGM_ORIGIN_DMA, NULL), 0);
    assert_int_equal(r.origin, PGM_ORIGIN_DMA);
    assert_ptr_equal(r.vcpu, e->vcpu);
    assert_true(r.gpa == 0x10008 && !r.write);
    v = 0x77;
    assert_int_equal(pgm_write_gva(e->vcpu, 0x1018, &v, 1, PGM_ACCESS_USER, PGM_ORIGIN_GUEST,
                                   NULL), 0);
    assert_int_equal(r.origin, PGM_ORIGIN_GUEST);
    assert_true(r.gpa == 0x10018 && r.write && r.size == 1);
    assert_int_equal((uint8_t)peek(e, 0x10018), 0x77);
    /* bad arguments */
    assert_int_equal(pgm_phys_read_origin(e->vm, 0, &v, 8, (enum pgm_access_origin)7), -EINVAL);
    assert_int_equal(pgm_phys_write_origin(NULL, 0, &v, 8, PGM_ORIGIN_DMA), -EINVAL);
    assert_int_equal(pgm_phys_read_origin(e->vm, 0, NULL, 8, PGM_ORIGIN_DMA), -EINVAL);
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, &v, 8, 0, (enum pgm_access_origin)9, NULL),
                     -EINVAL);
    assert_int_equal(r.calls, 5);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x10000), 0);
}

/* ---- Simple variants ---------------------------------------------------------- */

static void
test_simple_bypasses_handlers(void **state)
{
    struct env *e = *state;
    struct rec all = { .answer = PGM_HANDLER_HANDLED }, wr = { .answer = PGM_HANDLER_HANDLED };
    struct rec mmio = { .answer = PGM_HANDLER_HANDLED };
    reg(e, PGM_HANDLER_ALL, 0x20000, 0x1000, &all);
    reg(e, PGM_HANDLER_WRITE, 0x21000, 0x1000, &wr);
    assert_int_equal(pgm_phys_add_mmio(e->vm, 0x2000000, 0x1000), 0);
    reg(e, PGM_HANDLER_MMIO, 0x2000000, 0x1000, &mmio);
    uint64_t v = 0x1234;
    /* ALL page: the simple write lands in the backing, the handled read does not see it */
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x20000, &v, 8), 0);
    v = 0;
    assert_int_equal(pgm_phys_read(e->vm, 0x20000, &v, 8), 0);
    assert_true(v == 0xaaaaaaaaaaaaaaaaull);
    assert_int_equal(all.calls, 1);
    assert_int_equal(pgm_phys_read_simple(e->vm, 0x20000, &v, 8), 0);
    assert_true(v == 0x1234);
    assert_int_equal(all.calls, 1);
    /* WRITE page: the handled write would be swallowed; the simple one lands */
    v = 0x5678;
    assert_int_equal(pgm_phys_write(e->vm, 0x21000, &v, 8), 0);
    assert_int_equal(wr.calls, 1);
    assert_true(peek(e, 0x21000) == 0);
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x21000, &v, 8), 0);
    assert_int_equal(wr.calls, 1);
    assert_true(peek(e, 0x21000) == 0x5678);
    /* MMIO: no backing. All-ones, writes dropped, -ENODEV, no callback */
    assert_int_equal(pgm_phys_read_simple(e->vm, 0x2000010, &v, 8), -ENODEV);
    assert_true(v == ~0ull);
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x2000010, &v, 8), -ENODEV);
    assert_int_equal(mmio.calls, 0);
    /* a span from RAM into MMIO: the RAM part is read, the rest all-ones */
    assert_int_equal(pgm_phys_add_ram(e->vm, 0x1fff000, 0x1000), 0);
    uint32_t w = 0xcafef00d;
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x1fffffc, &w, 4), 0);
    uint8_t b[8];
    assert_int_equal(pgm_phys_read_simple(e->vm, 0x1fffffc, b, 8), -ENODEV);
    const uint8_t want[8] = { 0x0d, 0xf0, 0xfe, 0xca, 0xff, 0xff, 0xff, 0xff };
    assert_memory_equal(b, want, 8);
    assert_int_equal(mmio.calls, 0);
    /* ROM: the image, and writes dropped (the ROM is in ROM mode) */
    const char img[] = "ROMDATA";
    assert_int_equal(pgm_phys_add_rom(e->vm, 0x3000000, 0x1000, img, sizeof(img)), 0);
    char rb[8] = { 0 };
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x3000000, "xxxx", 4), 0);
    assert_int_equal(pgm_phys_read_simple(e->vm, 0x3000000, rb, 8), 0);
    assert_string_equal(rb, "ROMDATA");
    /* unassigned */
    assert_int_equal(pgm_phys_read_simple(e->vm, 0x4000000, &v, 8), 0);
    assert_true(v == ~0ull);
    assert_int_equal(pgm_phys_read_simple(NULL, 0, &v, 8), -EINVAL);
    assert_int_equal(pgm_phys_write_simple(e->vm, 0, NULL, 8), -EINVAL);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x20000), 0);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x21000), 0);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x2000000), 0);
}

/* Simple writes still mark dirty-logged pages (documented choice). */
static void
test_simple_marks_dirty(void **state)
{
    struct env *e = *state;
    const pgm_gpa_t base = 0x40000;
    assert_int_equal(pgm_dirty_log_start(e->vm, base, 4 * 0x1000), 0);
    uint64_t bm = 0, v = 1;
    assert_int_equal(pgm_phys_write_simple(e->vm, base + 0x2008, &v, 8), 0);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, base, &bm), 0);
    assert_true(bm == 0x4);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, base, &bm), 0);
    assert_true(bm == 0);
    /* across pages 0 and 1, twice (the second write finds the pages turned off) */
    uint8_t buf[16] = { 1 };
    assert_int_equal(pgm_phys_write_simple(e->vm, base + 0xff8, buf, 16), 0);
    assert_int_equal(pgm_phys_write_simple(e->vm, base + 0xff8, buf, 16), 0);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, base, &bm), 0);
    assert_true(bm == 0x3);
    /* reads never mark */
    assert_int_equal(pgm_phys_read_simple(e->vm, base + 0x3000, buf, 16), 0);
    assert_int_equal(pgm_dirty_log_get_and_clear(e->vm, base, &bm), 0);
    assert_true(bm == 0);
    assert_int_equal(pgm_dirty_log_stop(e->vm, base), 0);
}

/* ---- Guest-virtual accesses ----------------------------------------------------- */

static void
test_gva_translate_and_ad(void **state)
{
    struct env *e = *state;
    uint64_t v = 0;
    struct pgm_gva_fault f;
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, &v, 8, 0, PGM_ORIGIN_GUEST, &f), 0);
    assert_true(v == 0x1122334455667788ull);
    assert_true((peek(e, 0x4008) & 0x60) == 0x20); /* A set, D not */
    /* NO_AD leaves A clear */
    assert_int_equal(pgm_read_gva_simple(e->vcpu, 0x2000, &v, 8, PGM_ACCESS_NO_AD, &f), 0);
    assert_true(v == 0x99aabbccddeeff00ull);
    assert_true((peek(e, 0x4010) & 0x20) == 0);
    /* a write sets D */
    v = 0x4242;
    assert_int_equal(pgm_write_gva(e->vcpu, 0x1010, &v, 8, PGM_ACCESS_USER, PGM_ORIGIN_GUEST,
                                   &f), 0);
    assert_true((peek(e, 0x4008) & 0x60) == 0x60);
    assert_true(peek(e, 0x10010) == 0x4242);
    /* across a page: bytes from both frames */
    uint8_t b[8];
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1ffc, b, 8, PGM_ACCESS_USER, PGM_ORIGIN_GUEST, &f),
                     0);
    uint8_t want[8];
    uint32_t lo = 0, hi = 0xddeeff00u;
    assert_int_equal(pgm_phys_read(e->vm, 0x10ffc, &lo, 4), 0);
    memcpy(want, &lo, 4);
    memcpy(want + 4, &hi, 4);
    assert_memory_equal(b, want, 8);
    audit(e);
}

static void
test_gva_faults(void **state)
{
    struct env *e = *state;
    struct pgm_gva_fault f;
    uint8_t b[8] = { 0 };
    /* VA 0 not present: supervisor read -> error code 0 at CR2 0xffc */
    memset(&f, 0, sizeof(f));
    assert_int_equal(pgm_read_gva(e->vcpu, 0xffc, b, 8, 0, PGM_ORIGIN_GUEST, &f),
                     PGM_RC_GUEST_FAULT);
    assert_int_equal(f.vector, 14);
    assert_int_equal(f.error_code, 0);
    assert_true(f.address == 0xffc);
    /* write crossing into the read-only page: P|W (3) supervisor with WP, P|W|U (7) user,
     * at the second page, and nothing written to the first */
    uint64_t before = peek(e, 0x10ff8);
    const uint8_t ones[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    assert_int_equal(pgm_write_gva(e->vcpu, 0x1ffc, ones, 8, 0, PGM_ORIGIN_GUEST, &f),
                     PGM_RC_GUEST_FAULT);
    assert_int_equal(f.error_code, 3);
    assert_true(f.address == 0x2000);
    assert_int_equal(pgm_write_gva_simple(e->vcpu, 0x1ffc, ones, 8, PGM_ACCESS_USER, &f),
                     PGM_RC_GUEST_FAULT);
    assert_int_equal(f.error_code, 7);
    assert_true(peek(e, 0x10ff8) == before);
    /* supervisor read of a user page is fine; a user access to the supervisor PT is not */
    assert_int_equal(pgm_read_gva(e->vcpu, 0x5000, b, 8, PGM_ACCESS_USER, PGM_ORIGIN_GUEST, &f),
                     PGM_RC_GUEST_FAULT);
    assert_int_equal(f.error_code, 5); /* P|U */
    /* non-canonical: #GP */
    assert_int_equal(pgm_read_gva(e->vcpu, 0x0000800000000000ull, b, 8, 0, PGM_ORIGIN_GUEST,
                                  &f), PGM_RC_GUEST_FAULT);
    assert_int_equal(f.vector, 13);
    assert_int_equal(f.error_code, 0);
    /* fault without a fault struct */
    assert_int_equal(pgm_read_gva(e->vcpu, 0, b, 1, 0, PGM_ORIGIN_GUEST, NULL),
                     PGM_RC_GUEST_FAULT);
    /* bad arguments */
    assert_int_equal(pgm_write_gva(e->vcpu, 0x1000, b, 8, PGM_ACCESS_FETCH, PGM_ORIGIN_GUEST, &f),
                     -EINVAL);
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, b, 8, PGM_ACCESS_WRITE, PGM_ORIGIN_GUEST, &f),
                     -EINVAL);
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, b, 8, 1u << 20, PGM_ORIGIN_GUEST, &f),
                     -EINVAL);
    assert_int_equal(pgm_read_gva(NULL, 0x1000, b, 8, 0, PGM_ORIGIN_GUEST, &f), -EINVAL);
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, NULL, 8, 0, PGM_ORIGIN_GUEST, &f), -EINVAL);
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, NULL, 0, 0, PGM_ORIGIN_GUEST, &f), 0);
    audit(e);
}

/* A span longer than the translations kept (16 pages): checked whole first. */
static void
test_gva_long_span(void **state)
{
    struct env *e = *state;
    size_t len = SPAN_PAGES * 0x1000;
    uint8_t *buf = test_malloc(len);
    memset(buf, 0x5a, len);
    struct pgm_gva_fault f;
    assert_int_equal(pgm_write_gva(e->vcpu, VA_SPAN, buf, len, 0, PGM_ORIGIN_GUEST, &f),
                     PGM_RC_GUEST_FAULT);
    assert_true(f.address == VA_SPAN + (SPAN_PAGES - 1) * 0x1000ull);
    assert_int_equal(f.error_code, 2); /* not present, write, supervisor */
    for (unsigned i = 0; i < SPAN_PAGES - 1; i++)
        assert_true(peek(e, GPA_SPAN + i * 0x1000ull) == 0);
    /* the last page present: every byte lands where the tables say */
    poke(e, 0x5000 + (SPAN_PAGES - 1) * 8, (GPA_SPAN + 0x100000) | 0x67);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 12));
    assert_int_equal(pgm_write_gva(e->vcpu, VA_SPAN + 3, buf, len - 3, 0, PGM_ORIGIN_GUEST, &f),
                     0);
    uint8_t *back = test_malloc(len);
    for (unsigned i = 0; i < SPAN_PAGES; i++) {
        pgm_gpa_t gpa = i + 1 < SPAN_PAGES ? GPA_SPAN + i * 0x1000ull : GPA_SPAN + 0x100000;
        assert_int_equal(pgm_phys_read(e->vm, gpa, back + i * 0x1000, 0x1000), 0);
    }
    assert_memory_equal(back + 3, buf, len - 3);
    memset(back, 0, len);
    assert_int_equal(pgm_read_gva(e->vcpu, VA_SPAN + 3, back, len - 3, 0, PGM_ORIGIN_GUEST, &f),
                     0);
    assert_memory_equal(back, buf, len - 3);
    test_free(back);
    test_free(buf);
    audit(e);
}

/* A handler asking for an exit part way: the bytes before it were read. */
static void
test_gva_handler_exit(void **state)
{
    struct env *e = *state;
    struct rec r = { .answer = PGM_HANDLER_DEFAULT, .exit_at = 0x11000 };
    reg(e, PGM_HANDLER_ALL, 0x11000, 0x1000, &r);
    uint8_t b[16];
    memset(b, 0, sizeof(b));
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1ff8, b, 16, 0, PGM_ORIGIN_GUEST, NULL),
                     PGM_RC_HANDLER_EXIT);
    uint64_t lo;
    memcpy(&lo, b, 8);
    assert_true(lo == peek(e, 0x10ff8));
    assert_int_equal(r.calls, 1);
    /* the simple read goes past it */
    assert_int_equal(pgm_read_gva_simple(e->vcpu, 0x1ff8, b, 16, 0, NULL), 0);
    uint64_t hi;
    memcpy(&hi, b + 8, 8);
    assert_true(hi == 0x99aabbccddeeff00ull);
    assert_int_equal(r.calls, 1);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x11000), 0);
}

/* Paging off, protected mode: linear = physical, wrapping at 4 GiB. */
static void
test_gva_wrap_4g(void **state)
{
    struct env *e = *state;
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    assert_int_equal(pgm_phys_add_ram(e->vm, 0xfffff000, 0x1000), 0);
    const uint8_t in[4] = { 1, 2, 3, 4 };
    assert_int_equal(pgm_write_gva(e->vcpu, 0xfffffffe, in, 4, 0, PGM_ORIGIN_GUEST, NULL), 0);
    uint8_t hi[2], lo[2];
    assert_int_equal(pgm_phys_read(e->vm, 0xfffffffe, hi, 2), 0);
    assert_int_equal(pgm_phys_read(e->vm, 0, lo, 2), 0);
    assert_true(hi[0] == 1 && hi[1] == 2 && lo[0] == 3 && lo[1] == 4);
    uint8_t out[4];
    assert_int_equal(pgm_read_gva(e->vcpu, 0xfffffffe, out, 4, 0, PGM_ORIGIN_GUEST, NULL), 0);
    assert_memory_equal(out, in, 4);
}

/* ---- Shadow coherence: writes to shadowed guest tables --------------------------- */

static uint64_t
soft_read(struct env *e, uint64_t va)
{
    uint64_t v = 0;
    struct pgm_fault_out out;
    assert_int_equal(pgm_soft_access(e->vcpu, va, 0, &v, 8, &out), 0);
    assert_int_equal(out.result, PGM_FAULT_RESUME);
    audit(e);
    return v;
}

static void
test_shadow_coherence(void **state)
{
    struct env *e = *state;
    assert_true(soft_read(e, 0x1000) == 0x1122334455667788ull); /* PT 0x4000 shadowed */
    /* the guest PTE for VA 0x1000 rewritten through the guest's own mapping of it */
    uint64_t pte = 0x11007;
    assert_int_equal(pgm_write_gva(e->vcpu, 0x5008, &pte, 8, 0, PGM_ORIGIN_GUEST, NULL), 0);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    assert_true(soft_read(e, 0x1000) == 0x99aabbccddeeff00ull);
    /* back, with the simple guest-virtual write */
    pte = 0x10007;
    assert_int_equal(pgm_write_gva_simple(e->vcpu, 0x5008, &pte, 8, 0, NULL), 0);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    assert_true(soft_read(e, 0x1000) == 0x1122334455667788ull);
    /* and with the simple physical write */
    pte = 0x11007;
    assert_int_equal(pgm_phys_write_simple(e->vm, 0x4008, &pte, 8), 0);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    assert_true(soft_read(e, 0x1000) == 0x99aabbccddeeff00ull);
    /* a DMA write clearing the PTE: the page is gone for the guest */
    pte = 0;
    assert_int_equal(pgm_phys_write_origin(e->vm, 0x4008, &pte, 8, PGM_ORIGIN_DMA), 0);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    uint64_t v;
    struct pgm_fault_out out;
    assert_int_equal(pgm_soft_access(e->vcpu, 0x1000, 0, &v, 8, &out), 0);
    assert_int_equal(out.result, PGM_FAULT_INJECT);
    assert_int_equal(out.error_code, 0);
    audit(e);
}

/*
 * A 32-bit guest (PD 0x20000, PT 0x21000, 4-byte entries; VA 0x1000 ->
 * 0x10000, VA 0x5000 -> the PT, supervisor) on every host paging: the
 * guest-virtual write into its own PT keeps the shadows coherent.
 */
static void
test_gva_32bit_guest(void **state)
{
    struct env *e = *state;
    uint32_t pde0 = 0x21007, pte1 = 0x10007, pte5 = 0x21003;
    assert_int_equal(pgm_phys_write(e->vm, 0x20000, &pde0, 4), 0);
    assert_int_equal(pgm_phys_write(e->vm, 0x21004, &pte1, 4), 0);
    assert_int_equal(pgm_phys_write(e->vm, 0x21014, &pte5, 4), 0);
    struct pgm_cpu_state st = { .cr0 = PGM_CR0_PE | PGM_CR0_PG | PGM_CR0_WP,
                                .cr4 = PGM_CR4_PSE, .cr3 = 0x20000 };
    assert_int_equal(pgm_set_cpu_state(e->vcpu, &st, 0), 0);
    bool shadow = e->paging != PGM_PAGING_NONE;
    uint64_t v = 0;
    struct pgm_fault_out out;
    if (shadow) { /* the PT gets shadowed */
        assert_int_equal(pgm_soft_access(e->vcpu, 0x1000, 0, &v, 8, &out), 0);
        assert_int_equal(out.result, PGM_FAULT_RESUME);
        audit(e);
    }
    assert_int_equal(pgm_read_gva(e->vcpu, 0x1000, &v, 8, 0, PGM_ORIGIN_GUEST, NULL), 0);
    assert_true(v == 0x1122334455667788ull);
    uint32_t a;
    assert_int_equal(pgm_phys_read(e->vm, 0x21004, &a, 4), 0);
    assert_int_equal(a & 0x60, 0x20); /* A set in the 4-byte PTE */
    /* remap VA 0x1000 through the guest's own mapping of its PT */
    uint32_t npte = 0x11007;
    assert_int_equal(pgm_write_gva(e->vcpu, 0x5004, &npte, 4, 0, PGM_ORIGIN_GUEST, NULL), 0);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    if (shadow) {
        assert_int_equal(pgm_soft_access(e->vcpu, 0x1000, 0, &v, 8, &out), 0);
        assert_true(v == 0x99aabbccddeeff00ull);
        audit(e);
    }
    assert_int_equal(pgm_read_gva_simple(e->vcpu, 0x1000, &v, 8, 0, NULL), 0);
    assert_true(v == 0x99aabbccddeeff00ull);
    /* a user write to the supervisor PT mapping: P|W|U */
    struct pgm_gva_fault f;
    assert_int_equal(pgm_write_gva(e->vcpu, 0x5000, &npte, 4, PGM_ACCESS_USER,
                                   PGM_ORIGIN_GUEST, &f), PGM_RC_GUEST_FAULT);
    assert_int_equal(f.vector, 14);
    assert_int_equal(f.error_code, 7);
    assert_true(f.address == 0x5000);
}

/*
 * A VMM write to a shadowed guest table that also has an ALL handler: the
 * handler sees the write once, and no read - the shadow engine's snapshot
 * of the table reads the backing, not the device.
 */
static void
test_snapshot_bypasses_handler(void **state)
{
    struct env *e = *state;
    assert_true(soft_read(e, 0x1000) == 0x1122334455667788ull); /* PT 0x4000 shadowed */
    struct rec r = { .answer = PGM_HANDLER_DEFAULT };
    reg(e, PGM_HANDLER_ALL, 0x4000, 0x1000, &r);
    uint64_t pte = 0x11007;
    assert_int_equal(pgm_phys_write(e->vm, 0x4008, &pte, 8), 0);
    assert_int_equal(r.calls, 1);
    assert_true(r.write && r.gpa == 0x4008);
    audit(e);
    assert_int_equal(pgm_invlpg(e->vcpu, 0x1000), 0);
    assert_true(soft_read(e, 0x1000) == 0x99aabbccddeeff00ull);
    assert_int_equal(pgm_handler_deregister(e->vm, 0x4000), 0);
}

int
main(void)
{
#define BOTH(fn) cmocka_unit_test_setup_teardown(fn, setup_none, teardown), \
                 cmocka_unit_test_setup_teardown(fn, setup_shadow, teardown)
    const struct CMUnitTest tests[] = {
        BOTH(test_origin_tags),
        BOTH(test_simple_bypasses_handlers),
        BOTH(test_simple_marks_dirty),
        BOTH(test_gva_translate_and_ad),
        BOTH(test_gva_faults),
        BOTH(test_gva_long_span),
        BOTH(test_gva_handler_exit),
        BOTH(test_gva_wrap_4g),
        cmocka_unit_test_setup_teardown(test_shadow_coherence, setup_shadow, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_bypasses_handler, setup_shadow, teardown),
        BOTH(test_gva_32bit_guest),
        cmocka_unit_test_setup_teardown(test_gva_32bit_guest, setup_shadow32, teardown),
        cmocka_unit_test_setup_teardown(test_gva_32bit_guest, setup_shadow_pae, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
