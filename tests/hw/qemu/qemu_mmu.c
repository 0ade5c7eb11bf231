/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu: run `pgm walk` cases on QEMU's TCG MMU (qemu-system-x86_64) and
 * print the results in the `pgm walk` output format.
 *
 *   qemu_mmu [-v] [--bios FILE] [--qemu PROG] [--keep DIR] < cases > results
 *
 * The guest (guest/, built into qemu_guest.bin) is the machine's BIOS. One
 * QEMU boot runs every case of one (MAXPHYADDR, gbpages) group: the host
 * writes the cases into a blob (-device loader), the guest executes each one
 * for real in the case's paging mode and prints what happened on the debugcon
 * port. See guest/qg.h for the machine layout and README.md for the method,
 * the QEMU deviations from the SDM that are excluded, and the limitations.
 *
 * What is observed and what is derived:
 *   - fault / no fault, the #PF error code and #GP: observed (the exception
 *     the access raised; CR2 must be the case's va);
 *   - mem values after the access: observed (read back after the access);
 *   - which entry was the leaf: observed (a second, privileged write access,
 *     after clearing bit 6 of every listed entry word, sets D in the leaf
 *     only);
 *   - gpa and size: derived from that leaf entry and its level, found by
 *     following the case's tables from CR3 (the "navigator" in qemu_plan.c,
 *     which decides nothing about faults); checked against the byte a read
 *     access returned, and for a fetch by the int3 planted at the derived
 *     gpa.
 *
 * The files are listed in qemu_mmu.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "qemu_mmu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

int verbose;
const char *qemu_prog = "qemu-system-x86_64";
char bios_path[PATH_MAX];
const char *keep_dir;
char workdir[PATH_MAX];

void fmt(char *dst, size_t n, const char *f, ...)
{
    va_list ap;
    int r;

    va_start(ap, f);
    r = vsnprintf(dst, n, f, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= n) {
        fprintf(stderr, "qemu_mmu: path or option too long\n");
        exit(2);
    }
}

/* ---------------------------------------------------------------- main */

static void find_bios(void)
{
    char exe[PATH_MAX];
    ssize_t n;
    const char *env = getenv("QEMU_MMU_BIOS");

    if (bios_path[0])
        return;
    if (env && *env) {
        fmt(bios_path, sizeof(bios_path), "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;

        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            fmt(bios_path, sizeof(bios_path), "%s/qemu_guest.bin", exe);
            return;
        }
    }
    fmt(bios_path, sizeof(bios_path), "qemu_guest.bin");
}

static int group_key(const struct plan *p)
{
    return (int)p->c.maxphyaddr * 2 + (p->c.gbpages ? 1 : 0);
}

int main(int argc, char **argv)
{
    struct plan *plans = NULL;
    size_t nplans = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    unsigned run_no = 0;
    int qemu_ok;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) {
            verbose++;
        } else if (!strcmp(argv[i], "--bios") && i + 1 < argc) {
            fmt(bios_path, sizeof(bios_path), "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--qemu") && i + 1 < argc) {
            qemu_prog = argv[++i];
        } else if (!strcmp(argv[i], "--keep") && i + 1 < argc) {
            keep_dir = argv[++i];
        } else {
            fprintf(stderr, "usage: qemu_mmu [-v] [--bios FILE] [--qemu PROG] [--keep DIR]"
                            " < cases\n");
            return 2;
        }
    }
    find_bios();
    if (access(bios_path, R_OK)) {
        fprintf(stderr, "qemu_mmu: guest image %s not readable\n", bios_path);
        return 2;
    }

    while (getline(&line, &lcap, stdin) > 0) {
        struct plan *p;
        int rc;

        if (nplans == cap) {
            cap = cap ? cap * 2 : 1024;
            plans = realloc(plans, cap * sizeof(*plans));
            if (!plans) {
                perror("qemu_mmu: realloc");
                return 2;
            }
        }
        p = &plans[nplans];
        memset(p, 0, sizeof(*p));
        line[strcspn(line, "\n")] = '\0';
        rc = wcase_parse(line, &p->c, p->reason, sizeof(p->reason));
        if (rc == 0)
            continue;
        nplans++;
        if (rc < 0) {
            p->kind = 1;
            continue;
        }
        plan_case(p);
    }
    free(line);

    if (keep_dir) {
        fmt(workdir, sizeof(workdir), "%s", keep_dir);
        mkdir(workdir, 0755);
    } else {
        const char *tmp = getenv("TMPDIR");

        fmt(workdir, sizeof(workdir), "%s/qemu_mmu.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(workdir)) {
            perror("qemu_mmu: mkdtemp");
            return 2;
        }
    }

    {
        char cmd[PATH_MAX + 64];

        fmt(cmd, sizeof(cmd), "%s --version >/dev/null 2>&1", qemu_prog);
        qemu_ok = system(cmd) == 0;
    }

    /* groups by (MAXPHYADDR, gbpages), each one QEMU run (more after a
     * crash) */
    for (;;) {
        size_t *list, n = 0, first = SIZE_MAX;
        struct gresult *gres;
        int key;

        for (size_t i = 0; i < nplans; i++)
            if (plans[i].kind == 0 && !plans[i].done) {
                first = i;
                break;
            }
        if (first == SIZE_MAX)
            break;
        if (!qemu_ok) {
            fprintf(stderr, "qemu_mmu: %s is not available\n", qemu_prog);
            if (!keep_dir)
                rmdir(workdir);
            return 77;
        }
        key = group_key(&plans[first]);
        list = malloc(nplans * sizeof(*list));
        gres = calloc(nplans, sizeof(*gres));
        if (!list || !gres) {
            perror("qemu_mmu: malloc");
            return 2;
        }
        /* a group, at most MAX_BATCH cases per QEMU run (blob size) */
        for (size_t i = first; i < nplans && n < MAX_BATCH; i++)
            if (plans[i].kind == 0 && !plans[i].done && group_key(&plans[i]) == key)
                list[n++] = i;
        {
            size_t got = run_qemu(plans, list, n, gres, plans[first].c.maxphyaddr,
                                  plans[first].c.gbpages, run_no++);

            for (size_t j = 0; j < got; j++) {
                interpret(&plans[list[j]], &gres[j]);
                plans[list[j]].done = 1;
            }
            if (got < n) {
                set_skip(&plans[list[got]], "guest crashed or hung on this case");
                plans[list[got]].done = 1;
                if (verbose)
                    fprintf(stderr, "qemu_mmu: guest died on case line %zu\n", list[got] + 1);
            }
        }
        free(list);
        free(gres);
    }

    for (size_t i = 0; i < nplans; i++) {
        struct plan *p = &plans[i];
        char out[WCASE_LINE_MAX];

        if (p->kind == 1) {
            printf("error=%s\n", p->reason);
        } else if (p->kind == 2) {
            printf("skip=%s\n", p->reason);
        } else {
            wresult_format(&p->res, &p->c, out, sizeof(out));
            printf("%s\n", out);
        }
    }
    if (!keep_dir)
        rmdir(workdir);
    free(plans);
    return 0;
}
