/* SPDX-License-Identifier: MIT */
/*
 * minivmm's exit loop, written the way a VT-x VMM's is.
 *
 *   1. KVM_RUN returns (a KVM exit);
 *   2. the exit becomes the VMX exit record a VT-x CPU would have stored in
 *      the VMCS for the same guest event (basic exit reason, exit
 *      qualification, VM-exit interruption information + error code,
 *      guest-linear address): kvm_to_vmx();
 *   3. the record goes through libpgm's VT-x decoder (pgm_vtx_decode_exit)
 *      and the decoded event is dispatched to libpgm: dispatch().
 *
 * Only step 2 knows about KVM. The guest events and the records they make:
 *
 *   guest event                          KVM exit          VMX record
 *   #PF (the VMM stub, port 0xe0)        KVM_EXIT_IO       reason 0, intr info 0x80000b0e,
 *                                                          error code, qualification = CR2
 *   HC_MOV_CR3 / _CR0 / _CR4 (port 0xe1) KVM_EXIT_IO       reason 28, qualification: CR n,
 *                                                          MOV to CR, GPR 7 (RDI)
 *   HC_INVLPG                            KVM_EXIT_IO       reason 14, qualification = RDI
 *   other hypercalls                     KVM_EXIT_IO       reason 18 (VMCALL)
 *   console (port 0xe9)                  KVM_EXIT_IO       reason 30 (I/O instruction)
 *   HLT                                  KVM_EXIT_HLT      reason 12
 */
#include "vmm.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define RFLAGS_TF 0x100ull
#define RFLAGS_IF 0x200ull
#define RFLAGS_NT 0x4000ull
#define RFLAGS_RF 0x10000ull

static volatile sig_atomic_t timed_out;
static struct kvm_run *volatile cur_run;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (cur_run)
        cur_run->immediate_exit = 1;
}

/* ---- registers ---- */

static void regs_to_pgm(const struct kvm_regs *r, const struct kvm_sregs *s, struct pgm_regs *p)
{
    memset(p, 0, sizeof(*p));
    p->gpr[PGM_RAX] = r->rax, p->gpr[PGM_RCX] = r->rcx, p->gpr[PGM_RDX] = r->rdx;
    p->gpr[PGM_RBX] = r->rbx, p->gpr[PGM_RSP] = r->rsp, p->gpr[PGM_RBP] = r->rbp;
    p->gpr[PGM_RSI] = r->rsi, p->gpr[PGM_RDI] = r->rdi;
    p->gpr[PGM_R8] = r->r8, p->gpr[PGM_R9] = r->r9, p->gpr[PGM_R10] = r->r10;
    p->gpr[PGM_R11] = r->r11, p->gpr[PGM_R12] = r->r12, p->gpr[PGM_R13] = r->r13;
    p->gpr[PGM_R14] = r->r14, p->gpr[PGM_R15] = r->r15;
    p->rip = r->rip;
    p->rflags = r->rflags;
    p->code_bits = 64;
    p->cpl = (uint8_t)(s->cs.selector & 3);
    p->seg_base[PGM_FS] = s->fs.base;
    p->seg_base[PGM_GS] = s->gs.base;
}

static void pgm_to_regs(const struct pgm_regs *p, struct kvm_regs *r)
{
    r->rax = p->gpr[PGM_RAX], r->rcx = p->gpr[PGM_RCX], r->rdx = p->gpr[PGM_RDX];
    r->rbx = p->gpr[PGM_RBX], r->rbp = p->gpr[PGM_RBP];
    r->rsi = p->gpr[PGM_RSI], r->rdi = p->gpr[PGM_RDI];
    r->r8 = p->gpr[PGM_R8], r->r9 = p->gpr[PGM_R9], r->r10 = p->gpr[PGM_R10];
    r->r11 = p->gpr[PGM_R11], r->r12 = p->gpr[PGM_R12], r->r13 = p->gpr[PGM_R13];
    r->r14 = p->gpr[PGM_R14], r->r15 = p->gpr[PGM_R15];
}

static uint64_t gpr_value(const struct kvm_regs *r, int gpr)
{
    const uint64_t v[16] = { r->rax, r->rcx, r->rdx, r->rbx, r->rsp, r->rbp, r->rsi, r->rdi,
                             r->r8,  r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15 };
    return gpr >= 0 && gpr < 16 ? v[gpr] : 0;
}

static void fail(struct vmm *v, const char *why)
{
    struct kvm_regs r;
    kvm_get_regs(v, &r);
    fprintf(stderr, "minivmm: %s (rip %#llx rsp %#llx)\n", why, (unsigned long long)r.rip,
            (unsigned long long)r.rsp);
}

/* ---- injection: what VM entry with an interruption does, done by hand ----
 * The vector is delivered through the guest's own gate: its frame is pushed
 * on the guest's stack (TSS.RSP0 when coming from CPL3) through the guest's
 * tables, CS:RIP = the gate, CR2 = the fault address for #PF. */
struct ctx { uint64_t rip, cs, rflags, rsp, ss; };

static int guest_write64(struct vmm *v, uint64_t gva, uint64_t val)
{
    struct pgm_walk w;
    if (pgm_walk(v->pcpu, gva, PGM_ACCESS_WRITE, &w) < 0 || w.status != PGM_WALK_OK)
        return -1;
    return pgm_phys_write(v->pvm, w.gpa, &val, 8);
}

static int deliver(struct vmm *v, struct kvm_regs *r, struct kvm_sregs *s, const struct ctx *c,
                   unsigned vector, bool has_ec, uint32_t ec, uint64_t cr2)
{
    uint64_t target;
    if (vector == 14) {
        target = v->guest_pf_handler;
    } else {
        const uint64_t *idt = area_ptr(v, AREA_IDT);
        target = (idt[vector * 2] & 0xffff) | (idt[vector * 2] >> 48 & 0xffff) << 16 |
                 idt[vector * 2 + 1] << 32;
    }
    if (!target) {
        fprintf(stderr, "minivmm: guest has no handler for vector %u\n", vector);
        return -1;
    }
    bool from_user = (c->cs & 3) == 3;
    uint64_t rsp;
    if (from_user)
        memcpy(&rsp, v->tmem + AREA_HPA + AREA_TSS + 4, 8);
    else
        rsp = c->rsp;
    rsp &= ~15ull;
    uint64_t frame[6] = { c->ss, c->rsp, c->rflags, c->cs, c->rip, ec };
    unsigned n = has_ec ? 6 : 5;
    for (unsigned i = 0; i < n; i++) {
        rsp -= 8;
        if (guest_write64(v, rsp, frame[i]) != 0) {
            fprintf(stderr, "minivmm: cannot push the exception frame at %#llx (#DF)\n",
                    (unsigned long long)rsp);
            return -1;
        }
    }
    r->rip = target;
    r->rsp = rsp;
    r->rflags = (c->rflags & ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_IF)) | 2;
    seg_code64(&s->cs, SEL_KCODE, 0);
    seg_data(&s->ss, SEL_KDATA, 0); /* the CPU would load a NULL SS from CPL3 */
    if (vector == 14)
        s->cr2 = cr2;
    kvm_set_regs(v, r);
    kvm_set_sregs(v, s);
    return 0;
}

/* ---- step 2: KVM exit -> VMX exit record ---- */

struct exit_ctx {
    struct kvm_regs r;
    struct kvm_sregs s;
    bool have_s;
    uint8_t hc;            /* hypercall function (port 0xe1) */
};

static void kvm_to_vmx(struct vmm *v, struct exit_ctx *x, struct pgm_vtx_exit_fields *f)
{
    struct kvm_run *run = v->run;
    memset(f, 0, sizeof(*f));
    if (run->exit_reason == KVM_EXIT_HLT) {
        f->exit_reason = PGM_VTX_EXIT_HLT;
        return;
    }
    if (run->exit_reason != KVM_EXIT_IO) {
        f->exit_reason = 1u << 31 | PGM_VTX_EXIT_INVALID_GUEST_STATE; /* "not a guest event" */
        return;
    }
    uint8_t data = *((uint8_t *)run + run->io.data_offset);
    unsigned port = run->io.port;
    /* the raw I/O-instruction exit: size - 1, direction, immediate port, port */
    f->exit_reason = PGM_VTX_EXIT_IO_INSTRUCTION;
    f->exit_qualification = (uint64_t)(run->io.size - 1) |
                            (uint64_t)(run->io.direction == KVM_EXIT_IO_IN) << 3 | 1ull << 6 |
                            (uint64_t)port << 16;
    if (port == MINIVMM_PORT_PF && v->shadow) {
        /* the stub: the CPU pushed error code, RIP, CS, RFLAGS, RSP, SS on IST1 */
        const uint64_t *fr = area_ptr(v, AREA_STACK_TOP - 48);
        kvm_get_sregs(v, &x->s);
        x->have_s = true;
        f->exit_reason = PGM_VTX_EXIT_EXCEPTION_NMI;
        f->intr_info = 1u << 31 | 1u << 11 | 3u << 8 | 14u;
        f->intr_error_code = (uint32_t)fr[0];
        f->exit_qualification = x->s.cr2;
    } else if (port == MINIVMM_PORT_HC) {
        x->hc = data;
        switch (data) {
        case HC_MOV_CR3:
        case HC_MOV_CR0:
        case HC_MOV_CR4:
            if (!v->shadow)
                break;
            f->exit_reason = PGM_VTX_EXIT_CR_ACCESS;
            /* CR number, access type 0 (MOV to CR), GPR 7 (RDI) */
            f->exit_qualification = (data == HC_MOV_CR3 ? 3u : data == HC_MOV_CR0 ? 0u : 4u) |
                                    7u << 8;
            break;
        case HC_INVLPG:
            if (!v->shadow)
                break;
            f->exit_reason = PGM_VTX_EXIT_INVLPG;
            f->exit_qualification = x->r.rdi;
            f->guest_linear_address = x->r.rdi;
            break;
        default:
            f->exit_reason = PGM_VTX_EXIT_VMCALL;
            f->exit_qualification = 0;
            break;
        }
    }
}

/* ---- step 3: dispatch of the decoded event ---- */

static int on_pf(struct vmm *v, struct exit_ctx *x, const struct pgm_hwvirt_pf *pf)
{
    uint64_t *fr = area_ptr(v, AREA_STACK_TOP - 48);
    if (x->r.rsp != VMM_AREA_GVA + AREA_STACK_TOP - 48) {
        fail(v, "#PF stub entered with an unexpected stack (nested fault in delivery?)");
        return -1;
    }
    struct ctx c = { fr[1], fr[2], fr[3], fr[4], fr[5] };
    struct pgm_regs pr;
    regs_to_pgm(&x->r, &x->s, &pr);
    pr.gpr[PGM_RSP] = c.rsp;
    pr.rip = c.rip;
    pr.rflags = c.rflags;
    pr.cpl = (uint8_t)(c.cs & 3);
    struct pgm_fault_out out;
    uint64_t t0 = now_ns();
    int rc = pgm_trap0e(v->pcpu, pf->error_code, pf->cr2, &pr, &out);
    v->st.ns_pgm += now_ns() - t0;
    if (rc < 0) {
        fprintf(stderr, "minivmm: pgm_trap0e: %s\n", strerror(-rc));
        return -1;
    }
    if (v->verbose)
        fprintf(stderr, "  #PF ec %#x cr2 %#llx rip %#llx -> %d\n", pf->error_code,
                (unsigned long long)pf->cr2, (unsigned long long)c.rip, out.result);
    switch (out.result) {
    case PGM_FAULT_RESUME:
        v->st.pf_resume++;
        return 0; /* the stub pops the error code and IRETs */
    case PGM_FAULT_EMULATED:
        v->st.pf_emulated++;
        pgm_to_regs(&pr, &x->r);
        fr[1] = pr.rip;
        fr[3] = pr.rflags;
        fr[4] = pr.gpr[PGM_RSP];
        t0 = now_ns();
        kvm_set_regs(v, &x->r);
        v->st.ns_state += now_ns() - t0;
        return 0;
    case PGM_FAULT_INJECT:
        v->st.pf_inject++;
        t0 = now_ns();
        rc = deliver(v, &x->r, &x->s, &c, out.vector, out.vector == 14 || out.vector == 13,
                     out.error_code, out.address);
        v->st.ns_state += now_ns() - t0;
        return rc;
    case PGM_FAULT_EXIT:
        fprintf(stderr, "minivmm: libpgm cannot finish the access at rip %#llx (exit reason %d)\n",
                (unsigned long long)c.rip, out.exit_reason);
        return -1;
    }
    return -1;
}

static int inject_gp(struct vmm *v)
{
    struct kvm_vcpu_events ev;
    if (ioctl(v->vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
        vmm_die("KVM_GET_VCPU_EVENTS");
    ev.exception.injected = 1;
    ev.exception.nr = 13;
    ev.exception.has_error_code = 1;
    ev.exception.error_code = 0;
    if (ioctl(v->vcpu_fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        vmm_die("KVM_SET_VCPU_EVENTS");
    return 0;
}

static int on_cr(struct vmm *v, struct exit_ctx *x, const struct pgm_hwvirt_cr *cr)
{
    uint64_t val = gpr_value(&x->r, cr->gpr);
    int rc;
    if (cr->op != PGM_HWVIRT_CR_MOV_TO)
        return -1;
    uint64_t t0 = now_ns();
    if (cr->cr == 3) {
        v->st.hc_cr3++;
        uint64_t e = 0;
        pgm_phys_read(v->pvm, (val & 0x000ffffffffff000ull) + VMM_PML4_SLOT * 8, &e, 8);
        if (e & 1) {
            v->conflict = true;
            fprintf(stderr, "minivmm: the guest maps PML4 slot %u, reserved for the VMM area\n",
                    VMM_PML4_SLOT);
            return -1;
        }
        rc = pgm_sync_cr3(v->pcpu, val);
    } else {
        struct pgm_cpu_state st;
        pgm_get_cpu_state(v->pcpu, &st);
        if (cr->cr == 0)
            st.cr0 = val, v->st.hc_cr0++;
        else
            st.cr4 = val, v->st.hc_cr4++;
        rc = pgm_set_cpu_state(v->pcpu, &st, PGM_STATE_GUEST_WRITE);
    }
    v->st.ns_pgm += now_ns() - t0;
    if (rc == PGM_RC_INJECT_GP)
        return inject_gp(v);
    return rc < 0 ? -1 : 0;
}

static void console_char(struct vmm *v, char ch)
{
    if (ch == '\n' || v->console_len == sizeof(v->console) - 1) {
        v->console[v->console_len] = 0;
        if (!v->quiet_console)
            printf("  | %s\n", v->console);
        v->console_len = 0;
        if (ch == '\n')
            return;
    }
    v->console[v->console_len++] = ch;
}

static int on_vmcall(struct vmm *v, struct exit_ctx *x)
{
    switch (x->hc) {
    case HC_SET_IDT: {
        uint64_t gates[512];
        unsigned n = (unsigned)((x->r.rsi + 1) / 16);
        if (n > 256)
            n = 256;
        for (unsigned i = 0; i < n * 2; i++) {
            struct pgm_walk w;
            uint64_t va = x->r.rdi + i * 8ull;
            if (pgm_walk(v->pcpu, va, PGM_ACCESS_NO_AD, &w) < 0 || w.status != PGM_WALK_OK)
                return -1;
            pgm_phys_read(v->pvm, w.gpa, &gates[i], 8);
        }
        area_set_idt(v, gates, n);
        return 0;
    }
    case HC_SET_RSP0:
        area_set_rsp0(v, x->r.rdi);
        return 0;
    case HC_PROBE_FLIP:
        if (v->shadow)
            area_probe_flip(v);
        return 0;
    case HC_REPORT:
        v->reported = true;
        v->checksum = x->r.rdi;
        v->failures = x->r.rsi;
        return 0;
    case HC_MARK:
        if (x->r.rsi == 0) {
            v->st_mark = v->st;
            if (v->pvm)
                pgm_stats(v->pvm, &v->pst_mark);
            v->mark_ns = now_ns();
        } else {
            v->mark_elapsed_ns = now_ns() - v->mark_ns;
            v->mark_ops = x->r.rsi;
        }
        return 0;
    default:
        fprintf(stderr, "minivmm: unknown hypercall %u\n", x->hc);
        return -1;
    }
}

static int dispatch(struct vmm *v, struct exit_ctx *x, const struct pgm_vtx_exit_fields *f)
{
    struct pgm_hwvirt_event ev;
    if (pgm_vtx_decode_exit(f, NULL, &ev) < 0) {
        fprintf(stderr, "minivmm: malformed exit record\n");
        return -1;
    }
    switch (ev.kind) {
    case PGM_HWVIRT_PAGE_FAULT:
        v->st.exit_pf++;
        return on_pf(v, x, &ev.u.pf);
    case PGM_HWVIRT_CR_ACCESS:
        v->st.exit_hc++;
        return on_cr(v, x, &ev.u.cr);
    case PGM_HWVIRT_INVLPG: {
        v->st.exit_hc++;
        v->st.hc_invlpg++;
        uint64_t t0 = now_ns();
        int rc = pgm_invlpg(v->pcpu, ev.u.invlpg.gva);
        v->st.ns_pgm += now_ns() - t0;
        return rc < 0 ? -1 : 0;
    }
    case PGM_HWVIRT_NESTED_FAULT:
    case PGM_HWVIRT_NESTED_MISCONFIG:
        return -1; /* no nested paging in this VMM */
    case PGM_HWVIRT_OTHER:
        break;
    }
    switch (ev.reason) {
    case PGM_VTX_EXIT_VMCALL:
        v->st.exit_hc++;
        return on_vmcall(v, x);
    case PGM_VTX_EXIT_IO_INSTRUCTION:
        if ((f->exit_qualification >> 16) == MINIVMM_PORT_CONSOLE) {
            v->st.exit_console++;
            console_char(v, (char)*((uint8_t *)v->run + v->run->io.data_offset));
            return 0;
        }
        if ((f->exit_qualification >> 16) == MINIVMM_PORT_HC) /* native mode */
            return on_vmcall(v, x);
        fprintf(stderr, "minivmm: I/O to port %#llx\n",
                (unsigned long long)(f->exit_qualification >> 16));
        return -1;
    case PGM_VTX_EXIT_HLT:
        if (v->reported)
            return 1;
        fail(v, "guest halted without a verdict");
        return -1;
    default:
        v->st.exit_other++;
        if (v->run->exit_reason == KVM_EXIT_SHUTDOWN) {
            fail(v, "triple fault (KVM_EXIT_SHUTDOWN)");
            if (v->verbose && v->shadow) {
                uint64_t rsp0;
                struct kvm_sregs s;
                memcpy(&rsp0, v->tmem + AREA_HPA + AREA_TSS + 4, 8);
                kvm_get_sregs(v, &s);
                fprintf(stderr, "  TSS.RSP0 %#llx, gate 6 %#llx:%#llx, gate 14 %#llx:%#llx, "
                        "cr2 %#llx cr3 %#llx tr %#llx/%u gdt %#llx idt %#llx\n",
                        (unsigned long long)rsp0,
                        (unsigned long long)area_ptr(v, AREA_IDT)[13],
                        (unsigned long long)area_ptr(v, AREA_IDT)[12],
                        (unsigned long long)area_ptr(v, AREA_IDT)[29],
                        (unsigned long long)area_ptr(v, AREA_IDT)[28],
                        (unsigned long long)s.cr2, (unsigned long long)s.cr3,
                        (unsigned long long)s.tr.base, s.tr.type,
                        (unsigned long long)s.gdt.base, (unsigned long long)s.idt.base);
            }
        }
        else if (v->run->exit_reason == KVM_EXIT_MMIO)
            fprintf(stderr, "minivmm: access to unbacked memory at %#llx\n",
                    (unsigned long long)v->run->mmio.phys_addr);
        else if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
            fprintf(stderr, "minivmm: KVM internal error %u\n", v->run->internal.suberror);
        else
            fprintf(stderr, "minivmm: unexpected KVM exit %u\n", v->run->exit_reason);
        if (v->run->exit_reason != KVM_EXIT_SHUTDOWN)
            fail(v, "stopped");
        return -1;
    }
}

/* ---- before each entry (shadow mode) ---- */

static int before_entry(struct vmm *v)
{
    pgm_hpa_t root;
    uint64_t t0 = now_ns();
    int rc = pgm_before_entry(v->pcpu, &root);
    v->st.ns_pgm += now_ns() - t0;
    if (rc < 0) {
        fprintf(stderr, "minivmm: pgm_before_entry: %s\n", strerror(-rc));
        return -1;
    }
    uint64_t copy = root_copy_sync(v, root);
    if (copy != v->real_cr3) {
        struct kvm_sregs s;
        t0 = now_ns();
        kvm_get_sregs(v, &s);
        s.cr3 = copy;
        kvm_set_sregs(v, &s);
        v->st.ns_state += now_ns() - t0;
        v->real_cr3 = copy;
    }
    if (keep_rsp0_present(v))
        root_copy_sync(v, root);
    if (v->conflict) {
        fprintf(stderr, "minivmm: the guest uses PML4 slot %u, reserved for the VMM area\n",
                VMM_PML4_SLOT);
        return -1;
    }
    if (v->drop_pending)
        drop_kvm_cache(v);
    if (v->audit) {
        char msg[256];
        t0 = now_ns();
        rc = pgm_audit(v->pvm, msg, sizeof(msg));
        v->st.ns_audit += now_ns() - t0;
        if (rc != 0) {
            fprintf(stderr, "minivmm: pgm_audit: %s\n", rc > 0 ? msg : "error");
            return -1;
        }
    }
    return 0;
}

int vmm_run(struct vmm *v, uint64_t timeout_ms)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    timed_out = 0;
    cur_run = v->run;
    alarm((unsigned)((timeout_ms + 999) / 1000));
    int result = -1;
    for (;;) {
        if (v->shadow && before_entry(v) < 0)
            break;
        uint64_t t0 = now_ns();
        int r = ioctl(v->vcpu_fd, KVM_RUN, 0);
        v->st.ns_run += now_ns() - t0;
        if (r < 0) {
            if (errno == EINTR && timed_out) {
                v->run->immediate_exit = 0;
                fail(v, "timeout");
                break;
            }
            if (errno == EINTR || errno == EAGAIN)
                continue;
            vmm_die("KVM_RUN");
        }
        v->st.exits++;
        struct exit_ctx x;
        memset(&x, 0, sizeof(x));
        t0 = now_ns();
        kvm_get_regs(v, &x.r);
        v->st.ns_state += now_ns() - t0;
        struct pgm_vtx_exit_fields f;
        kvm_to_vmx(v, &x, &f);
        int rc = dispatch(v, &x, &f);
        if (rc != 0) {
            result = rc > 0 ? 0 : -1;
            break;
        }
    }
    alarm(0);
    cur_run = NULL;
    return result;
}
