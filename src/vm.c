/* SPDX-License-Identifier: MIT */
/* VM lifecycle and configuration. */
#include <errno.h>
#include <string.h>

#include "pgm/version.h"
#include "src/alloc.h"
#include "src/modes/shadow.h"
#include "src/nested/nested.h"
#include "src/vm.h"

#define PGM_STR_(x) #x
#define PGM_STR(x)  PGM_STR_(x)

PGM_API const char *
pgm_version(void)
{
    return PGM_STR(PGM_API_VERSION_MAJOR) "." PGM_STR(PGM_API_VERSION_MINOR) "."
           PGM_STR(PGM_API_VERSION_PATCH);
}

PGM_API void
pgm_vm_config_init(struct pgm_vm_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->paging = PGM_PAGING_NONE;
    cfg->vcpu_count = 1;
    cfg->features = (struct pgm_cpu_features){
        .maxphyaddr = 52,
        .nx = true,
        .pse = true,
        .pse36 = true,
        .gbpages = true,
        .la57 = true,
        .smep = true,
        .smap = true,
        .pku = true,
        .pcid = true,
        .pge = true,
    };
}

static int
check_config(const struct pgm_vm_config *cfg)
{
    if (cfg->struct_size != sizeof(*cfg))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(cfg->reserved); i++)
        if (cfg->reserved[i])
            return -EINVAL;
    if (cfg->features.maxphyaddr < 32 || cfg->features.maxphyaddr > 52)
        return -EINVAL;
    if (!cfg->vcpu_count || cfg->vcpu_count > PGM_MAX_VCPUS)
        return -EINVAL;
    if (cfg->paging != PGM_PAGING_NONE && cfg->paging != PGM_PAGING_SHADOW_AMD64 &&
        cfg->paging != PGM_PAGING_SHADOW_PAE && cfg->paging != PGM_PAGING_SHADOW_32 &&
        cfg->paging != PGM_PAGING_EPT && cfg->paging != PGM_PAGING_NPT)
        return -EINVAL;
    /* Vendor parameters belong to nested paging only (checked at creation). */
    if (cfg->nested && cfg->paging != PGM_PAGING_EPT && cfg->paging != PGM_PAGING_NPT)
        return -EINVAL;
    const struct pgm_backend_ops *be = cfg->backend;
    if (!be || be->struct_size < sizeof(*be) || !be->alloc_page || !be->free_page ||
        !be->hpa_to_ptr)
        return -EINVAL;
    if ((be->alloc_ram_block == NULL) != (be->free_ram_block == NULL))
        return -EINVAL;
    if ((cfg->allocator.alloc == NULL) != (cfg->allocator.free == NULL))
        return -EINVAL;
    return 0;
}

/* A full TLB flush request for every vCPU. */
static void
flush_all_vcpus(struct pgm_vm *vm)
{
    struct pgm_flush_req req = { .scope = PGM_FLUSH_ALL };
    for (unsigned i = 0; vm->be->flush && i < vm->vcpu_count; i++)
        vm->be->flush(vm->be_ctx, i, &req);
}

PGM_API int
pgm_vm_create(const struct pgm_vm_config *cfg, struct pgm_vm **out)
{
    if (!cfg || !out)
        return -EINVAL;
    int rc = check_config(cfg);
    if (rc < 0)
        return rc;

    struct pgm_vm *vm = pgm_zalloc(&cfg->allocator, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->cfg = *cfg;
    vm->alloc = cfg->allocator;
    vm->be = cfg->backend;
    vm->be_ctx = cfg->backend_ctx;
    vm->vcpu_count = cfg->vcpu_count;
    if (pthread_mutex_init(&vm->lock, NULL) != 0) {
        pgm_free(&cfg->allocator, vm);
        return -ENOMEM;
    }
    vm->vcpus = pgm_zalloc_array(&vm->alloc, vm->vcpu_count, sizeof(*vm->vcpus));
    if (!vm->vcpus || pgm_phys_init(vm) < 0 || pgm_handlers_init(vm) < 0 ||
        pgm_virt_init(vm) < 0) {
        pgm_vm_destroy(vm);
        return -ENOMEM;
    }
    bool shadow = cfg->paging == PGM_PAGING_SHADOW_AMD64 || cfg->paging == PGM_PAGING_SHADOW_PAE ||
                  cfg->paging == PGM_PAGING_SHADOW_32;
    if (shadow && pgm_shadow_create(vm) < 0) {
        pgm_vm_destroy(vm);
        return -ENOMEM;
    }
    if (cfg->paging == PGM_PAGING_EPT || cfg->paging == PGM_PAGING_NPT) {
        rc = pgm_nested_create(vm);
        if (rc < 0) {
            pgm_vm_destroy(vm);
            return rc;
        }
    }
    for (unsigned i = 0; i < vm->vcpu_count; i++) {
        struct pgm_vcpu *v = &vm->vcpus[i];
        v->vm = vm;
        v->id = i;
        /* Power-on state: real mode, CR0.ET, paging off. */
        v->state.cr0 = 0x10;
        v->mode = PGM_MODE_REAL;
        v->gops = pgm_guest_ops_for(PGM_MODE_REAL);
        v->bops = pgm_both_ops_for(cfg->paging, PGM_MODE_REAL);
        pgm_vcpu_refresh_walk_ctx(v);
    }
    /*
     * A vCPU id may have run another VM on this backend, whose cached
     * translations point at host pages that are free now (or recycled as
     * this VM's tables): nothing may be used before a full flush, as a
     * hypervisor flushes a VPID / ASID it hands to a new VM; for nested
     * paging the root's page may also be tagged in cached translations of
     * an earlier tree (KVM flushes a newly loaded root).
     */
    if (vm->shadow || vm->nested)
        flush_all_vcpus(vm);
    *out = vm;
    return 0;
}

PGM_API void
pgm_vm_destroy(struct pgm_vm *vm)
{
    if (!vm)
        return;
    /* No translation through the shadow or nested tables may outlive them. */
    if ((vm->shadow || vm->nested) && vm->vcpus)
        flush_all_vcpus(vm);
    if (vm->shadow) {
        for (unsigned i = 0; vm->vcpus && i < vm->vcpu_count; i++)
            pgm_shadow_drop_root(&vm->vcpus[i]);
        pgm_shadow_destroy(vm);
    }
    /* Before the RAM its leaves map goes away (no vCPU runs any more). */
    pgm_nested_destroy(vm);
    pgm_dirty_logs_fini(vm);
    pgm_virt_fini(vm);
    pgm_handlers_fini(vm);
    pgm_phys_fini(vm);
    pgm_free(&vm->alloc, vm->vcpus);
    pthread_mutex_destroy(&vm->lock);
    struct pgm_allocator a = vm->alloc;
    pgm_free(&a, vm);
}

PGM_API struct pgm_vcpu *
pgm_vcpu_get(struct pgm_vm *vm, unsigned id)
{
    if (!vm || id >= vm->vcpu_count)
        return NULL;
    return &vm->vcpus[id];
}

PGM_API const struct pgm_cpu_features *
pgm_vm_features(const struct pgm_vm *vm)
{
    return vm ? &vm->cfg.features : NULL;
}
