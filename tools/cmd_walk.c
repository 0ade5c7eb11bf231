/* SPDX-License-Identifier: MIT */
/*
 * `pgm walk`: run walk cases from stdin through libpgm's walker and print one
 * result line per case (format: README.md, "pgm walk").
 *
 * Each case gets a fresh VM whose CPUID has every paging feature (MAXPHYADDR
 * and 1 GiB pages as the case says), 64 MiB of RAM at GPA 0 holding the
 * case's `mem` values, and the control registers the case names.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pgm/pgm.h"
#include "tools/commands.h"
#include "tools/walk_case.h"

static void
print_mem(struct pgm_vm *vm, const struct walk_case *c, FILE *out)
{
    if (!c->nmem)
        return;
    fputs(" mem=", out);
    for (unsigned i = 0; i < c->nmem; i++) {
        uint64_t v = 0;
        /* Little-endian host assumed, as x86 guests are (checked in main). */
        pgm_phys_read(vm, c->mem[i].gpa, &v, c->mem[i].size);
        fprintf(out, "%s0x%" PRIx64 ":0x%" PRIx64, i ? "," : "", c->mem[i].gpa, v);
    }
}

static struct pgm_cpu_state
state_for(const struct walk_case *c)
{
    struct pgm_cpu_state s = { .cr0 = 0x10, .cr3 = c->cr3, .pkru = c->pkru };
    if (c->mode != PGM_MODE_REAL)
        s.cr0 |= PGM_CR0_PE;
    if (c->mode >= PGM_MODE_32BIT)
        s.cr0 |= PGM_CR0_PG;
    if (c->wp)
        s.cr0 |= PGM_CR0_WP;
    if (c->pse)
        s.cr4 |= PGM_CR4_PSE;
    if (c->pge)
        s.cr4 |= PGM_CR4_PGE;
    if (c->smep)
        s.cr4 |= PGM_CR4_SMEP;
    if (c->smap)
        s.cr4 |= PGM_CR4_SMAP;
    if (c->pke)
        s.cr4 |= PGM_CR4_PKE;
    if (c->mode >= PGM_MODE_PAE)
        s.cr4 |= PGM_CR4_PAE;
    if (c->mode >= PGM_MODE_AMD64)
        s.efer |= PGM_EFER_LME;
    if (c->mode == PGM_MODE_LA57)
        s.cr4 |= PGM_CR4_LA57;
    if (c->nxe)
        s.efer |= PGM_EFER_NXE;
    return s;
}

/* Run one parsed case; prints the result line without its newline. */
static int
run_case(struct pgm_soft_backend *sb, const struct walk_case *c, FILE *out)
{
    struct pgm_vm_config cfg;
    pgm_vm_config_init(&cfg);
    cfg.features.maxphyaddr = (uint8_t)c->maxphyaddr;
    cfg.features.gbpages = c->gbpages;
    cfg.backend = pgm_soft_backend_ops();
    cfg.backend_ctx = sb;

    struct pgm_vm *vm;
    int rc = pgm_vm_create(&cfg, &vm);
    if (rc < 0) {
        fprintf(out, "error=vm_create: %s", strerror(-rc));
        return rc;
    }
    rc = pgm_phys_add_ram(vm, 0, WALK_CASE_RAM_SIZE);
    for (unsigned i = 0; rc == 0 && i < c->nmem; i++)
        rc = pgm_phys_write(vm, c->mem[i].gpa, &c->mem[i].val, c->mem[i].size);
    if (rc < 0) {
        fprintf(out, "error=guest memory: %s", strerror(-rc));
        pgm_vm_destroy(vm);
        return rc;
    }

    struct pgm_vcpu *vcpu = pgm_vcpu_get(vm, 0);
    struct pgm_cpu_state st = state_for(c);
    rc = pgm_set_cpu_state(vcpu, &st, 0);
    if (rc == PGM_RC_INJECT_GP) {
        fputs("gp=1", out);
    } else if (rc < 0) {
        fprintf(out, "error=set_cpu_state: %s", strerror(-rc));
    } else {
        uint32_t access = c->access | (c->cpl == 3 ? PGM_ACCESS_USER : 0) |
                          (c->ac ? PGM_ACCESS_AC : 0);
        struct pgm_walk w;
        rc = pgm_walk(vcpu, c->va, access, &w);
        if (rc < 0) {
            fprintf(out, "error=walk: %s", strerror(-rc));
        } else if (w.status == PGM_WALK_GP) {
            fputs("gp=1", out);
        } else if (w.status == PGM_WALK_PAGE_FAULT) {
            fprintf(out, "fault=1 ec=0x%" PRIx32, w.error_code);
        } else {
            static const char *const sizes[31] = { [12] = "4k", [21] = "2m", [22] = "4m",
                                                   [30] = "1g" };
            fprintf(out, "fault=0 gpa=0x%" PRIx64 " size=%s", w.gpa,
                    w.page_shift < 31 && sizes[w.page_shift] ? sizes[w.page_shift] : "?");
        }
    }
    if (rc >= 0)
        print_mem(vm, c, out);
    pgm_vm_destroy(vm);
    return rc < 0 ? rc : 0;
}

int
pgm_cmd_walk(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: pgm walk < cases\n");
        return 2;
    }
    (void)argv;
    struct pgm_soft_backend *sb;
    if (pgm_soft_backend_create(1u << 16, &sb) < 0) {
        fprintf(stderr, "pgm walk: cannot create the soft backend\n");
        return 1;
    }
    static struct walk_case c;
    char line[16384];
    while (fgets(line, sizeof(line), stdin)) {
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            /* Over-long line: report it and skip the rest of it. */
            int ch;
            while ((ch = getchar()) != EOF && ch != '\n')
                ;
            puts("error=line too long");
            continue;
        }
        char err[128];
        int r = walk_case_parse(line, &c, err, sizeof(err));
        if (r == 0)
            continue;
        if (r < 0)
            printf("error=%s", err);
        else
            run_case(sb, &c, stdout);
        putchar('\n');
    }
    fflush(stdout);
    pgm_soft_backend_destroy(sb);
    return 0;
}
