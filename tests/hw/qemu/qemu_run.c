/* SPDX-License-Identifier: MIT */
/*
 * qemu_mmu, one QEMU process: write the batch's blob, start
 * qemu-system-x86_64 with the guest as BIOS and the blob on a loader device,
 * kill it if the guest's debugcon output stops growing for 20 s, and collect
 * the result lines. A guest that dies part-way leaves the results of the
 * cases before the one it died on; the caller reruns the rest.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "qemu_mmu.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

size_t run_qemu(struct plan *plans, const size_t *list, size_t n, struct gresult *gres,
                unsigned maxphyaddr, int gbpages, unsigned run_no)
{
    char blob_path[PATH_MAX + 32], out_path[PATH_MAX + 32], log_path[PATH_MAX + 32];
    char cpu[96], loader[PATH_MAX + 96], debugcon[PATH_MAX + 32];
    unsigned char *blob;
    size_t blob_len;
    FILE *f;
    pid_t pid;
    int status = 0;
    size_t got = 0;
    char *line = NULL;
    size_t cap = 0;
    double last_change;
    long last_size = -1;

    blob = blob_build(plans, list, n, &blob_len);
    fmt(blob_path, sizeof(blob_path), "%s/cases-%u.bin", workdir, run_no);
    fmt(out_path, sizeof(out_path), "%s/debugcon-%u.txt", workdir, run_no);
    fmt(log_path, sizeof(log_path), "%s/qemu-%u.log", workdir, run_no);
    f = fopen(blob_path, "wb");
    if (!f || fwrite(blob, 1, blob_len, f) != blob_len || fclose(f)) {
        perror("qemu_mmu: writing the case blob");
        exit(2);
    }
    free(blob);
    fmt(cpu, sizeof(cpu), "max,phys-bits=%u%s", maxphyaddr, gbpages ? "" : ",pdpe1gb=off");
    fmt(loader, sizeof(loader), "loader,file=%s,addr=0x%x,force-raw=on", blob_path,
             QG_BLOB_LOAD);
    fmt(debugcon, sizeof(debugcon), "file:%s", out_path);
    unlink(out_path);

    pid = fork();
    if (pid < 0) {
        perror("qemu_mmu: fork");
        exit(2);
    }
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* -smp 2 with MTTCG makes TCG run LOCK-prefixed instructions as real
         * atomic read-modify-writes, which probe the page for writing first
         * (with one vCPU, "lock or" is a load then a store, and a fault on
         * the load would have W=0 in the error code). The second vCPU is
         * never started. */
        execlp(qemu_prog, qemu_prog, "-nodefaults", "-no-user-config", "-machine", "pc",
               "-accel", "tcg,thread=multi", "-smp", "2", "-cpu", cpu, "-m", "64M", "-bios",
               bios_path, "-device", "VGA,addr=02.0", "-display", "none", "-debugcon", debugcon,
               "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-device", loader, "-no-reboot",
               (char *)NULL);
        perror("qemu_mmu: exec qemu");
        _exit(127);
    }

    {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        last_change = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    for (;;) {
        struct timespec ts, nap = {0, 5 * 1000 * 1000};
        struct stat st;
        pid_t w = waitpid(pid, &status, WNOHANG);
        double now;

        if (w == pid)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (stat(out_path, &st) == 0 && st.st_size != last_size) {
            last_size = st.st_size;
            last_change = now;
        }
        if (now - last_change > 20.0) {
            fprintf(stderr, "qemu_mmu: guest made no progress for 20 s, killing QEMU\n");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        nanosleep(&nap, NULL);
    }

    f = fopen(out_path, "r");
    if (!f) {
        fprintf(stderr, "qemu_mmu: no guest output (see %s)\n", log_path);
        FILE *lf = fopen(log_path, "r");
        if (lf) {
            char l[512];

            while (fgets(l, sizeof(l), lf))
                fprintf(stderr, "  %s", l);
            fclose(lf);
        }
        exit(2);
    }
    while (getline(&line, &cap, f) > 0) {
        if (verbose > 1)
            fprintf(stderr, "guest: %s", line);
        result_line(line, gres, n);
    }
    free(line);
    fclose(f);
    while (got < n && gres[got].have)
        got++;
    if (got < n && verbose)
        fprintf(stderr, "qemu_mmu: run %u: %zu of %zu cases done (QEMU status 0x%x)\n", run_no, got,
                n, status);
    if (!keep_dir) {
        unlink(blob_path);
        unlink(out_path);
        unlink(log_path);
    }
    return got;
}
