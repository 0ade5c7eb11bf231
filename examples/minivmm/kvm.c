/* SPDX-License-Identifier: MIT */
/* minivmm: the KVM side (VM, memory slots, vCPU, register state). */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void *slot_mem[4];
static uint64_t slot_gpa[4], slot_size[4];

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vmm_die(const char *what)
{
    fprintf(stderr, "minivmm: %s: %s\n", what, strerror(errno));
    exit(2);
}

int kvm_open(struct vmm *v)
{
    v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (v->kvm_fd < 0)
        return -errno;
    if (ioctl(v->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        close(v->kvm_fd);
        return -ENOTSUP;
    }
    v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
    if (v->vm_fd < 0) {
        int e = -errno;
        close(v->kvm_fd);
        return e;
    }
    return 0;
}

void kvm_add_slot(struct vmm *v, uint32_t slot, uint64_t gpa, uint64_t size, void *mem)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        vmm_die("KVM_SET_USER_MEMORY_REGION");
    slot_mem[slot] = mem;
    slot_gpa[slot] = gpa;
    slot_size[slot] = size;
}

void kvm_del_slot(struct vmm *v, uint32_t slot)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = slot_gpa[slot], .memory_size = 0,
        .userspace_addr = (uint64_t)(uintptr_t)slot_mem[slot],
    };
    if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        vmm_die("KVM_SET_USER_MEMORY_REGION (delete)");
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

void kvm_create_vcpu(struct vmm *v)
{
    int nent = 256;
    struct kvm_cpuid2 *c;

    v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
    if (v->vcpu_fd < 0)
        vmm_die("KVM_CREATE_VCPU");
    int sz = ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0)
        vmm_die("KVM_GET_VCPU_MMAP_SIZE");
    v->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu_fd, 0);
    if (v->run == MAP_FAILED)
        vmm_die("mmap kvm_run");
    for (;;) {
        c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
        if (!c)
            vmm_die("calloc");
        c->nent = (uint32_t)nent;
        if (ioctl(v->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            break;
        if (errno != E2BIG)
            vmm_die("KVM_GET_SUPPORTED_CPUID");
        free(c);
        nent *= 2;
    }
    struct kvm_cpuid_entry2 *e = cpuid_find(c, 0x80000001, 0);
    if (!e || !(e->edx >> 20 & 1) || !(e->edx >> 29 & 1)) {
        fprintf(stderr, "minivmm: this KVM offers no long mode or no NX to guests\n");
        exit(2);
    }
    if (ioctl(v->vcpu_fd, KVM_SET_CPUID2, c) < 0)
        vmm_die("KVM_SET_CPUID2");
    free(c);
}

void kvm_get_regs(struct vmm *v, struct kvm_regs *r)
{
    if (ioctl(v->vcpu_fd, KVM_GET_REGS, r) < 0)
        vmm_die("KVM_GET_REGS");
}

void kvm_set_regs(struct vmm *v, const struct kvm_regs *r)
{
    if (ioctl(v->vcpu_fd, KVM_SET_REGS, r) < 0)
        vmm_die("KVM_SET_REGS");
}

void kvm_get_sregs(struct vmm *v, struct kvm_sregs *s)
{
    if (ioctl(v->vcpu_fd, KVM_GET_SREGS, s) < 0)
        vmm_die("KVM_GET_SREGS");
}

void kvm_set_sregs(struct vmm *v, const struct kvm_sregs *s)
{
    if (ioctl(v->vcpu_fd, KVM_SET_SREGS, s) < 0)
        vmm_die("KVM_SET_SREGS");
}

void kvm_close(struct vmm *v)
{
    if (v->run)
        munmap(v->run, (size_t)ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0));
    if (v->vcpu_fd > 0)
        close(v->vcpu_fd);
    close(v->vm_fd);
    close(v->kvm_fd);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, unsigned dpl, bool code)
{
    memset(s, 0, sizeof(*s));
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = (uint8_t)dpl;
    s->s = 1;
    s->l = code;
    s->db = !code;
    s->g = 1;
}

void seg_code64(struct kvm_segment *s, uint16_t sel, unsigned dpl)
{
    seg(s, sel, 11, dpl, true);
}

void seg_data(struct kvm_segment *s, uint16_t sel, unsigned dpl)
{
    seg(s, sel, 3, dpl, false);
}
