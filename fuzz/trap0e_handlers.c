/* SPDX-License-Identifier: MIT */
/*
 * trap0e scenario, handler and access-API operations (see trap0e_handlers.h
 * for the encoding and trap0e_scenario.c for the scenario).
 *
 * The MMIO device on the scenario's MMIO page is a model with a known
 * answer: while one of these operations runs, the device is "armed" with
 * the accesses the operation must make - derived from a direct guest walk
 * (pgm_walk with NO_AD) done before, never from libpgm's own result - and
 * every callback must match the next expected access (gpa, size,
 * direction, written bytes, origin, vCPU); reads return a function of the
 * address. Outside these operations the device reads as all-ones and
 * ignores writes, which is what the rest of the scenario expects of that
 * page (a floating bus). The ALL handler on a RAM page answers DEFAULT, so
 * it changes no result, only the path accesses take.
 */
#include "trap0e_handlers.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXP 2

struct exp_access {
    uint64_t gpa;
    size_t size;
    bool write;
    uint8_t bytes[64];
};

/* TRAP0E_STATS: what the operations reached. */
static struct {
    unsigned long long device_calls, emulated, emulated_faults, gva_ok, gva_faults, gva_nodev;
} t0x_tally;

static struct {
    uint64_t mmio_gpa;
    bool mmio_on, all_on;
    uint64_t all_gpa;
    bool armed;
    struct exp_access exp[MAX_EXP];
    unsigned nexp, seen;
    enum pgm_access_origin origin;
    struct pgm_vcpu *vcpu;
} st;

static void t0x_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
t0x_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trap0e handlers: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* For printing. */
#define ULL(x) ((unsigned long long)(x))

static uint8_t
dev_byte(uint64_t gpa)
{
    return (uint8_t)((gpa * 0x9d) ^ 0x5c);
}

static enum pgm_handler_result
mmio_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
        enum pgm_access_origin origin, void *user)
{
    (void)user;
    if (size == 0 || gpa < st.mmio_gpa || gpa + size > st.mmio_gpa + 4096)
        t0x_fail("MMIO callback at %#llx size %llu outside the device", ULL(gpa), ULL(size));
    if (!st.armed) {
        if (!write)
            memset(buf, 0xff, size);
        return PGM_HANDLER_HANDLED;
    }
    if (st.seen >= st.nexp)
        t0x_fail("unexpected MMIO callback at %#llx (%llu expected)", ULL(gpa), ULL(st.nexp));
    const struct exp_access *e = &st.exp[st.seen++];
    t0x_tally.device_calls++;
    if (e->gpa != gpa || e->size != size || e->write != write)
        t0x_fail("MMIO callback at %#llx, the walk says %#llx", ULL(gpa), ULL(e->gpa));
    if (origin != st.origin || vcpu != st.vcpu)
        t0x_fail("MMIO callback origin %llu, expected %llu", ULL(origin), ULL(st.origin));
    if (write && memcmp(buf, e->bytes, size))
        t0x_fail("MMIO callback at %#llx saw other bytes than written (size %llu)", ULL(gpa),
                 ULL(size));
    for (size_t i = 0; !write && i < size; i++)
        ((uint8_t *)buf)[i] = dev_byte(gpa + i);
    return PGM_HANDLER_HANDLED;
}

static enum pgm_handler_result
all_fn(struct pgm_vcpu *vcpu, pgm_gpa_t gpa, void *buf, size_t size, bool write,
       enum pgm_access_origin origin, void *user)
{
    (void)vcpu, (void)buf, (void)write, (void)origin, (void)user;
    if (size == 0 || (gpa & ~0xfffull) != st.all_gpa || (gpa & 0xfff) + size > 4096)
        t0x_fail("ALL callback at %#llx size %llu outside its page", ULL(gpa), ULL(size));
    return PGM_HANDLER_DEFAULT;
}

void
t0x_print_stats(void)
{
    fprintf(stderr, "handler ops: device calls %llu, emulated %llu (+%llu faults), gva ok %llu, "
            "gva -ENODEV %llu, gva faults %llu\n", t0x_tally.device_calls, t0x_tally.emulated,
            t0x_tally.emulated_faults, t0x_tally.gva_ok, t0x_tally.gva_nodev, t0x_tally.gva_faults);
    memset(&t0x_tally, 0, sizeof(t0x_tally));
}

void
t0x_begin(void)
{
    memset(&st, 0, sizeof(st));
}

static void
add_span(struct t0x_ctx *c, uint64_t gpa, size_t len)
{
    if (gpa < c->ram_size && c->nspans < 4)
        c->spans[c->nspans++] = (struct t0x_span){ gpa, len };
}

/* An API result: 0, or with failure injection any error but -EIO. */
static bool
api_ok(struct t0x_ctx *c, int rc, const char *what)
{
    if (rc == 0)
        return true;
    if (c->inject_failures && rc < 0 && rc != -EIO) {
        c->uncertain = true;
        return false;
    }
    fprintf(stderr, "trap0e handlers: %s returned %d\n", what, rc);
    abort();
}

/* What a read of @n bytes at @gpa must return, the device armed as now. */
static void
expected_read(struct t0x_ctx *c, uint64_t gpa, uint8_t *out, size_t n, bool device)
{
    if (gpa < c->ram_size) {
        if (pgm_phys_read_simple(c->vm, gpa, out, n) != 0)
            t0x_fail("pgm_phys_read_simple of RAM at %#llx failed (%llu)", ULL(gpa), ULL(n));
    } else if (gpa >= st.mmio_gpa && gpa < st.mmio_gpa + 4096 && device) {
        for (size_t i = 0; i < n; i++)
            out[i] = dev_byte(gpa + i);
    } else {
        memset(out, 0xff, n);
    }
}

static bool
is_mmio(uint64_t gpa)
{
    return gpa >= st.mmio_gpa && gpa < st.mmio_gpa + 4096;
}

/* ---- a guest instruction against the device (or whatever the walk gives) ---- */

static const struct {
    uint8_t bytes[4];
    uint8_t len, size;
    bool write, movzx;
} insns[6] = {
    { { 0x88, 0x07 }, 2, 1, true, false },       /* mov [rdi], al */
    { { 0x66, 0x89, 0x07 }, 3, 2, true, false }, /* mov [rdi], ax */
    { { 0x89, 0x07 }, 2, 4, true, false },       /* mov [rdi], eax */
    { { 0x48, 0x89, 0x07 }, 3, 8, true, false }, /* mov [rdi], rax (64-bit code only) */
    { { 0x8b, 0x07 }, 2, 4, false, false },      /* mov eax, [rdi] */
    { { 0x0f, 0xb6, 0x07 }, 3, 1, false, true }, /* movzx eax, byte [rdi] */
};

static void
emulated_access(struct t0x_ctx *c, unsigned a1, unsigned a3, uint64_t va, uint64_t code_va)
{
    enum pgm_guest_mode m = pgm_guest_mode(c->vcpu);
    if (m == PGM_MODE_REAL)
        return; /* 16-bit code: other operand sizes */
    bool x64 = m == PGM_MODE_AMD64 || m == PGM_MODE_LA57;
    unsigned k = a3 % 6;
    if (k == 3 && !x64)
        k = 2;
    size_t size = insns[k].size;
    bool write = insns[k].write;
    /* the code goes into a data page the guest can fetch from (CPL 0) */
    code_va = x64 ? code_va & ~(uint64_t)0xf : (uint32_t)code_va & ~0xfu;
    struct pgm_walk cw;
    if (pgm_walk(c->vcpu, code_va, PGM_ACCESS_FETCH | PGM_ACCESS_NO_AD, &cw) != 0)
        t0x_fail("pgm_walk of the code at %#llx failed", ULL(code_va));
    if (cw.status != PGM_WALK_OK || cw.gpa >= c->ram_size || (cw.gpa >> 12) < c->data_first)
        return;
    add_span(c, cw.gpa, insns[k].len);
    if (!api_ok(c, pgm_phys_write(c->vm, cw.gpa, insns[k].bytes, insns[k].len), "code write"))
        return;
    if ((va & 0xfff) + size > 4096)
        va -= size;
    if (!x64)
        va = (uint32_t)va;
    struct pgm_walk w;
    if (pgm_walk(c->vcpu, va, (write ? PGM_ACCESS_WRITE : 0) | PGM_ACCESS_NO_AD, &w) != 0)
        t0x_fail("pgm_walk of %#llx failed", ULL(va));
    uint64_t value = 0x0123456789abcdefull ^ ((uint64_t)a1 * 0x9e3779b97f4a7c15ull);
    struct pgm_regs regs = { .rip = code_va, .rflags = 2, .code_bits = x64 ? 64 : 32 };
    regs.gpr[PGM_RDI] = va;
    regs.gpr[PGM_RAX] = write ? value : ~0ull;
    bool ok = w.status == PGM_WALK_OK;
    st.nexp = st.seen = 0;
    if (ok && is_mmio(w.gpa) && st.mmio_on) {
        st.exp[0] = (struct exp_access){ .gpa = w.gpa, .size = size, .write = write };
        memcpy(st.exp[0].bytes, &value, size);
        st.nexp = 1;
    }
    st.origin = PGM_ORIGIN_GUEST;
    st.vcpu = c->vcpu;
    st.armed = true;
    struct pgm_fault_out out;
    int rc = pgm_emulate_insn(c->vcpu, &regs, &out);
    st.armed = false;
    if (ok && write)
        add_span(c, w.gpa, size);
    if (!api_ok(c, rc, "pgm_emulate_insn"))
        return;
    if (!ok) {
        bool gp = w.status == PGM_WALK_GP;
        if (out.result != PGM_FAULT_INJECT || out.vector != (gp ? 13 : 14) ||
            (!gp && (out.error_code != w.error_code || out.address != va)))
            t0x_fail("emulated access at %#llx: result %llu, the walk faults", ULL(va),
                     ULL(out.result));
        t0x_tally.emulated_faults++;
        return;
    }
    if (out.result != PGM_FAULT_EMULATED || regs.rip != code_va + insns[k].len)
        t0x_fail("emulated access at %#llx: result %llu, the walk allows it", ULL(va),
                 ULL(out.result));
    if (st.seen != st.nexp)
        t0x_fail("emulated access at %#llx: %llu device callbacks missing", ULL(va),
                 ULL(st.nexp - st.seen));
    t0x_tally.emulated++;
    uint8_t want[8] = { 0 };
    if (write) {
        if (w.gpa < c->ram_size) {
            expected_read(c, w.gpa, want, size, st.mmio_on);
            if (memcmp(want, &value, size))
                t0x_fail("emulated store at gpa %#llx did not land (size %llu)", ULL(w.gpa),
                         ULL(size));
        }
        return;
    }
    expected_read(c, w.gpa, want, size, st.mmio_on);
    uint64_t v = 0;
    memcpy(&v, want, size);
    /* 32-bit destinations zero-extend in 64-bit code; compare what 32-bit code defines */
    uint64_t got = x64 ? regs.gpr[PGM_RAX] : (uint32_t)regs.gpr[PGM_RAX];
    if (got != v)
        t0x_fail("emulated load from gpa %#llx gave %#llx", ULL(w.gpa), ULL(got));
}

void
t0x_handler_op(struct t0x_ctx *c, unsigned a0, unsigned a1, unsigned a3, uint64_t va,
               uint64_t code_va)
{
    st.mmio_gpa = c->mmio_gpa;
    c->nspans = 0;
    c->uncertain = false;
    switch (a0 % 4) {
    case 0:
        if (!st.mmio_on)
            st.mmio_on = api_ok(c, pgm_handler_register(c->vm, &(struct pgm_phys_handler){
                .kind = PGM_HANDLER_MMIO, .gpa = c->mmio_gpa, .size = 4096, .fn = mmio_fn }),
                "MMIO handler registration");
        return;
    case 1:
        if (st.mmio_on && api_ok(c, pgm_handler_deregister(c->vm, c->mmio_gpa), "MMIO dereg"))
            st.mmio_on = false;
        return;
    case 2:
        emulated_access(c, a1, a3, va, code_va);
        return;
    case 3: {
        if (st.all_on) {
            if (api_ok(c, pgm_handler_deregister(c->vm, st.all_gpa), "ALL handler dereg"))
                st.all_on = false;
            return;
        }
        st.all_gpa = (uint64_t)(a1 % (c->ram_size / 4096)) << 12;
        int rc = pgm_handler_register(c->vm, &(struct pgm_phys_handler){
            .kind = PGM_HANDLER_ALL, .gpa = st.all_gpa, .size = 4096, .fn = all_fn });
        if (rc == -EEXIST)
            return; /* the scenario's WRITE handler or dirty log is there */
        st.all_on = api_ok(c, rc, "ALL handler registration");
        return;
    }
    }
}

/* ---- pgm_read_gva / pgm_write_gva against the direct walk ---------------------- */

void
t0x_gva_op(struct t0x_ctx *c, unsigned fl, unsigned a0, unsigned a3, uint64_t va)
{
    st.mmio_gpa = c->mmio_gpa;
    c->nspans = 0;
    c->uncertain = false;
    bool write = fl & 1, simple = fl & 2;
    uint32_t flags = (fl & 4 ? PGM_ACCESS_USER : 0) | (fl & 8 ? PGM_ACCESS_NO_AD : 0);
    enum pgm_access_origin origin = (enum pgm_access_origin)(a0 % 3);
    size_t len = 1 + (a3 & 63);
    if (a3 & 64)
        va = (va | 0xfff) - len / 2;
    struct pgm_cpu_state cs;
    pgm_get_cpu_state(c->vcpu, &cs);
    bool lma = cs.efer & PGM_EFER_LMA;

    /* The pieces (at most two for 64 bytes) and their walks, before anything runs. */
    uint64_t la[2];
    size_t n[2], off[2];
    struct pgm_walk w[2];
    unsigned pieces = 0, faulting = 2;
    bool any_mmio = false;
    for (size_t done = 0; done < len; pieces++) {
        la[pieces] = lma ? va + done : (uint32_t)(va + done);
        size_t in_page = 4096 - (la[pieces] & 0xfff);
        n[pieces] = len - done < in_page ? len - done : in_page;
        off[pieces] = done;
        if (pgm_walk(c->vcpu, la[pieces], (write ? PGM_ACCESS_WRITE : 0) |
                     (flags & PGM_ACCESS_USER) | PGM_ACCESS_NO_AD, &w[pieces]) != 0)
            t0x_fail("pgm_walk of %#llx failed", ULL(la[pieces]));
        if (w[pieces].status != PGM_WALK_OK && faulting == 2)
            faulting = pieces;
        if (w[pieces].status == PGM_WALK_OK && is_mmio(w[pieces].gpa))
            any_mmio = true;
        done += n[pieces];
    }
    uint8_t in[64], buf[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(a0 * 31 + a3 * 7 + i * 13);
    memset(buf, 0xcc, sizeof(buf));
    bool device = st.mmio_on && !simple;
    st.nexp = st.seen = 0;
    for (unsigned p = 0; faulting == 2 && device && p < pieces; p++) {
        if (!is_mmio(w[p].gpa))
            continue;
        struct exp_access *e = &st.exp[st.nexp++];
        *e = (struct exp_access){ .gpa = w[p].gpa, .size = n[p], .write = write };
        memcpy(e->bytes, in + off[p], n[p]);
    }
    st.origin = origin;
    st.vcpu = c->vcpu;
    st.armed = true;
    struct pgm_gva_fault f;
    memset(&f, 0, sizeof(f));
    int rc;
    if (simple)
        rc = write ? pgm_write_gva_simple(c->vcpu, va, in, len, flags, &f)
                   : pgm_read_gva_simple(c->vcpu, va, buf, len, flags, &f);
    else
        rc = write ? pgm_write_gva(c->vcpu, va, in, len, flags, origin, &f)
                   : pgm_read_gva(c->vcpu, va, buf, len, flags, origin, &f);
    st.armed = false;
    if (faulting == 2 && write)
        for (unsigned p = 0; p < pieces; p++)
            add_span(c, w[p].gpa, n[p]);
    int want_rc = faulting != 2 ? PGM_RC_GUEST_FAULT : any_mmio && !device ? -ENODEV : 0;
    if (rc != want_rc && c->inject_failures && rc < 0 && rc != -EIO && rc != -EINVAL &&
        rc != -ENODEV) {
        c->uncertain = true;
        return;
    }
    if (rc != want_rc)
        t0x_fail("gva access at %#llx returned %d (expected %d)", ULL(va), rc, want_rc);
    if (faulting != 2) {
        const struct pgm_walk *fw = &w[faulting];
        bool gp = fw->status == PGM_WALK_GP;
        if (f.vector != (gp ? 13 : 14) || f.error_code != (gp ? 0 : fw->error_code) ||
            f.address != la[faulting])
            t0x_fail("gva access fault: vector %llu error %#llx differs from the walk",
                     ULL(f.vector), ULL(f.error_code));
        t0x_tally.gva_faults++;
        return;
    }
    if (st.seen != st.nexp)
        t0x_fail("gva access at %#llx: %llu device callbacks missing", ULL(va),
                 ULL(st.nexp - st.seen));
    *(rc == -ENODEV ? &t0x_tally.gva_nodev : &t0x_tally.gva_ok) += 1;
    for (unsigned p = 0; p < pieces; p++) {
        uint8_t want[64];
        expected_read(c, w[p].gpa, want, n[p], device);
        if (write ? w[p].gpa < c->ram_size && memcmp(want, in + off[p], n[p])
                  : memcmp(want, buf + off[p], n[p]))
            t0x_fail("gva access: piece at gpa %#llx (%llu bytes) has the wrong bytes",
                     ULL(w[p].gpa), ULL(n[p]));
    }
}
