/* SPDX-License-Identifier: MIT */
/*
 * kvm_mmu's KVM side: /dev/kvm, one VM (RAM memslot at 0, harness memslot
 * at HARNESS_GPA) and one vCPU per guest MAXPHYADDR, the vCPU's register
 * state for a case, and the KVM_RUN loop with its watchdog.
 *
 * One VM per MAXPHYADDR because CPUID 0x80000008 cannot change after the
 * first KVM_RUN. A VM's RAM starts as signatures (sig_of) and is then only
 * changed by guest writes (kvm_case.c), so KVM's shadow MMU sees every
 * page-table change.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kvm_mmu.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int kvm_fd = -1;
static int vcpu_mmap_size;
static struct kvm_cpuid2 *supported_cpuid;
unsigned host_maxphyaddr;
bool have_nx, have_smep, have_smap, have_pku, have_gbpages, have_la57;
static struct vm *vms[64];
/* The watchdog: SIGALRM makes the running KVM_RUN return (immediate_exit). */
static volatile sig_atomic_t timed_out;
static struct kvm_run *volatile cur_run;

void die(const char *what)
{
    fprintf(stderr, "kvm_mmu: %s: %s\n", what, strerror(errno));
    exit(2);
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (cur_run)
        cur_run->immediate_exit = 1;
}

/* ---- VM construction ------------------------------------------------------- */

static void set_slot(struct vm *v, uint32_t slot, uint64_t gpa, uint64_t size, void *mem)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };

    if (ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
}

static struct vm *vm_create(unsigned maxphyaddr)
{
    struct vm *v = calloc(1, sizeof(*v));
    struct kvm_cpuid2 *c;
    struct kvm_cpuid_entry2 *e;
    size_t csz;

    if (!v)
        die("calloc");
    v->maxphyaddr = maxphyaddr;
    v->cur_slot = ~0u;
    v->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (v->fd < 0)
        die("KVM_CREATE_VM");
    v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                  -1, 0);
    v->harness = mmap(NULL, HARNESS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v->ram == MAP_FAILED || v->harness == MAP_FAILED)
        die("mmap");
    for (uint64_t g = 0; g < RAM_SIZE; g += 8)
        wr64(v->ram + g, sig_of(g));
    build_harness(v);
    set_slot(v, 0, 0, RAM_SIZE, v->ram);
    set_slot(v, 1, HARNESS_GPA, HARNESS_SIZE, v->harness);

    v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
    if (v->vcpu < 0)
        die("KVM_CREATE_VCPU");
    v->run = mmap(NULL, (size_t)vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
    if (v->run == MAP_FAILED)
        die("mmap kvm_run");

    csz = sizeof(*c) + supported_cpuid->nent * sizeof(struct kvm_cpuid_entry2);
    c = malloc(csz);
    if (!c)
        die("malloc");
    memcpy(c, supported_cpuid, csz);
    if ((e = cpuid_find(c, 7, 0)) != NULL) {
        if (have_smep)
            e->ebx |= 1u << 7;
        if (have_smap)
            e->ebx |= 1u << 20;
    }
    if ((e = cpuid_find(c, 0x80000008, 0)) != NULL)
        e->eax = (e->eax & ~0xffu) | maxphyaddr;
    for (unsigned k = 0; k < 2; k++) {
        if ((e = cpuid_find(c, k ? 0x80000000u : 0, 0)) != NULL) {
            /* "GenuineIntel" / "AuthenticAMD" in EBX, EDX, ECX */
            e->ebx = guest_amd ? 0x68747541 : 0x756e6547;
            e->edx = guest_amd ? 0x69746e65 : 0x49656e69;
            e->ecx = guest_amd ? 0x444d4163 : 0x6c65746e;
        }
    }
    if (ioctl(v->vcpu, KVM_SET_CPUID2, c) < 0)
        die("KVM_SET_CPUID2");
    free(c);
    return v;
}

struct vm *vm_get(unsigned maxphyaddr)
{
    if (!vms[maxphyaddr])
        vms[maxphyaddr] = vm_create(maxphyaddr);
    return vms[maxphyaddr];
}

void vm_drop(unsigned maxphyaddr)
{
    struct vm *v = vms[maxphyaddr];

    if (!v)
        return;
    close(v->vcpu);
    close(v->fd);
    munmap(v->ram, RAM_SIZE);
    munmap(v->harness, HARNESS_SIZE);
    free(v);
    vms[maxphyaddr] = NULL;
}

void kvm_init(void)
{
    struct kvm_cpuid_entry2 *e;
    struct sigaction sa;
    int nent = 256;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0)
        die("open /dev/kvm");
    if (ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "kvm_mmu: unexpected KVM API version\n");
        exit(2);
    }
    vcpu_mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vcpu_mmap_size <= 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    for (;;) {
        supported_cpuid = calloc(1, sizeof(*supported_cpuid) +
                                        (size_t)nent * sizeof(struct kvm_cpuid_entry2));
        if (!supported_cpuid)
            die("calloc");
        supported_cpuid->nent = (uint32_t)nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, supported_cpuid) == 0)
            break;
        if (errno != E2BIG)
            die("KVM_GET_SUPPORTED_CPUID");
        free(supported_cpuid);
        nent *= 2;
    }
    e = cpuid_find(supported_cpuid, 0x80000001, 0);
    have_nx = e && (e->edx >> 20 & 1);
    have_gbpages = e && (e->edx >> 26 & 1);
    e = cpuid_find(supported_cpuid, 7, 0);
    have_smep = e && (e->ebx >> 7 & 1);
    have_smap = e && (e->ebx >> 20 & 1);
    have_pku = e && (e->ecx >> 3 & 1);
    have_la57 = e && (e->ecx >> 16 & 1);
    e = cpuid_find(supported_cpuid, 0x80000008, 0);
    host_maxphyaddr = e ? (e->eax & 0xff) : 36;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t dpl, bool code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = dpl;
    s->s = 1;
    s->l = code;
    s->db = !code;
    s->g = 1;
}

bool vcpu_load_case(struct vm *v, const struct wcase *c, uint64_t base)
{
    struct kvm_sregs sr;
    struct kvm_regs regs;

    if (ioctl(v->vcpu, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS");
    seg(&sr.cs, 0x08, 11, 0, true);
    seg(&sr.ds, 0x10, 3, 0, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    memset(&sr.tr, 0, sizeof(sr.tr));
    sr.tr.base = base + OFF_TSS;
    sr.tr.limit = 0x67;
    sr.tr.selector = 0x28;
    sr.tr.type = 11;
    sr.tr.present = 1;
    memset(&sr.ldt, 0, sizeof(sr.ldt));
    sr.ldt.unusable = 1;
    sr.gdt.base = base + OFF_GDT;
    sr.gdt.limit = 0x2f;
    sr.idt.base = base + OFF_IDT;
    sr.idt.limit = 32 * 16 - 1;
    sr.cr0 = 0x80000031ull | (c->wp ? 1ull << 16 : 0);
    sr.cr3 = HARNESS_GPA + OFF_BOOT_PML4;
    sr.cr4 = 0x20ull | (c->pse ? 0x10 : 0) | (c->pge ? 0x80 : 0) | (c->smep ? 1ull << 20 : 0) |
             (c->smap ? 1ull << 21 : 0);
    sr.efer = 0x500ull | (c->nxe ? 0x800 : 0);
    memset(sr.interrupt_bitmap, 0, sizeof(sr.interrupt_bitmap));
    if (ioctl(v->vcpu, KVM_SET_SREGS, &sr) < 0)
        return false;
    memset(&regs, 0, sizeof(regs));
    regs.rip = base + KOFF(kh_entry);
    regs.rsp = base + OFF_STACK_TOP;
    regs.rflags = 2;
    if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");
    return true;
}

uint64_t vcpu_rip(struct vm *v)
{
    struct kvm_regs regs;

    if (ioctl(v->vcpu, KVM_GET_REGS, &regs) < 0)
        die("KVM_GET_REGS");
    return regs.rip;
}

void run_vcpu(struct vm *v, struct runinfo *ri)
{
    struct kvm_run *run = v->run;

    memset(ri, 0, sizeof(*ri));
    cur_run = run;
    timed_out = 0;
    alarm(5);
    for (;;) {
        int r = ioctl(v->vcpu, KVM_RUN, 0);

        if (r < 0) {
            if (errno == EINTR && timed_out) {
                run->immediate_exit = 0;
                ri->how = OUT_TIMEOUT;
                break;
            }
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        if (run->exit_reason == KVM_EXIT_MMIO) {
            if (!ri->mmio) {
                ri->mmio = true;
                ri->mmio_gpa = run->mmio.phys_addr;
                ri->mmio_write = run->mmio.is_write;
            }
            if (++ri->nmmio > 16) {
                ri->how = OUT_OTHER;
                ri->exit_reason = KVM_EXIT_MMIO;
                break;
            }
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT) {
            ri->how = OUT_HLT;
            break;
        }
        ri->exit_reason = run->exit_reason;
        if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
            ri->suberror = run->internal.suberror;
            if (verbose) {
                fprintf(stderr, "kvm_mmu: internal error %u:", run->internal.suberror);
                for (unsigned i = 0; i < run->internal.ndata && i < 16; i++)
                    fprintf(stderr, " %llx", (unsigned long long)run->internal.data[i]);
                fprintf(stderr, "\n");
            }
        }
        ri->how = run->exit_reason == KVM_EXIT_SHUTDOWN ? OUT_SHUTDOWN : OUT_OTHER;
        break;
    }
    alarm(0);
    cur_run = NULL;
}
