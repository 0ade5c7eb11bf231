/* SPDX-License-Identifier: MIT */
/*
 * kvm_mmu: run `pgm walk` cases (case.h) on a KVM vCPU and print the results
 * in the same output format.
 *
 * Each case really performs its access in a long-mode guest whose CR3 is the
 * case's own page-table tree:
 *
 *  - Guest RAM [0, 64 MiB) is the case's memory. Unlisted memory is filled
 *    with per-address signatures whose byte 0 is 0x06 (P=0), so every
 *    unlisted entry is not present exactly like the zero the contract
 *    specifies, and a data access that lands there reveals its GPA.
 *  - A 2 MiB harness (code, IDT, GDT, TSS, stack, mailbox, its own page
 *    tables) lives at GPA HARNESS_GPA. It is mapped through a PML4 slot H that
 *    the case's walk does not use; the guest itself writes the slot into the
 *    case's PML4 page (so KVM's shadow MMU sees every page-table write as a
 *    guest write), then loads the case's CR3 and performs the access.
 *  - Reads are `mov rax,[va&~7]`; writes `mov [va],cl` of a marker byte
 *    (the host checks that it landed on the predicted target and reports the
 *    memory as it was before, since `pgm walk` writes no data; a locked RMW
 *    is avoided because KVM's emulator reads before it writes and so sets A
 *    bits on a faulting write); fetches `jmp va` onto a HLT placed at the
 *    predicted target (HLT exit at CPL0, #GP at CPL3; an int3 would do, but
 *    KVM/PVM sends a CPL0 #BP through its emulator, which cannot do INT3).
 *    CPL3 accesses run from a user stub page reached by iretq.
 *  - The #PF/#GP/#BP/#UD handlers record vector, error code, CR2 and RIP in
 *    the mailbox and HLT; the host then reads results and the A/D bits from
 *    the memslot.
 *  - The GPA of a successful access comes from hardware evidence: the
 *    signature read, the marker or HLT found at the target, the MMIO exit for
 *    unassigned GPAs. A structural walk
 *    (addresses and PS bits only, no permission logic) predicts the target
 *    and the page size; any disagreement with the evidence is an error line.
 *  - Between cases only the qwords the previous case touched are restored,
 *    again by guest writes, then CR4.PGE is toggled and CR3 reloaded.
 *
 * One VM per guest MAXPHYADDR (CPUID 0x80000008 cannot change after the
 * first KVM_RUN). The files are listed in kvm_mmu.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kvm_mmu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

bool verbose;
bool guest_amd;
bool small_maxphyaddr_ok = true;
bool big_maxphyaddr_ok = true;
bool user_slot256_broken;

/* ---- probes ---------------------------------------------------------------- */

/* Does KVM honour a guest MAXPHYADDR below the host's? A PTE with a bit just
 * above the guest's MAXPHYADDR must give a reserved-bit #PF. */
static void probe_maxphyaddr(void)
{
    struct wcase c;
    struct wresult r;
    char reason[96];
    char line[256];
    unsigned m = host_maxphyaddr > 36 ? 36 : 0;

    if (m) {
        snprintf(line, sizeof(line),
                 "mode=amd64 cpl=0 acc=r va=0x1000 cr3=0x10000 maxphyaddr=%u "
                 "mem=0x10000:0x11003,0x11000:0x12003,0x12000:0x13003,0x13008:0x%llx",
                 m, (unsigned long long)((1ull << (m + 1)) | 0x200003ull));
        if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
            run_case(&c, &r);
            small_maxphyaddr_ok = r.kind == WRES_PF && (r.ec & 8);
            if (verbose)
                fprintf(stderr, "kvm_mmu: probe maxphyaddr %u: kind %d ec 0x%x\n", m, r.kind,
                        r.ec);
        }
    }
    if (host_maxphyaddr < 52) {
        snprintf(line, sizeof(line),
                 "mode=amd64 cpl=0 acc=r va=0x1000 cr3=0x10000 maxphyaddr=52 "
                 "mem=0x10000:0x11003,0x11000:0x12003,0x12000:0x13003,0x13008:0x%llx",
                 (unsigned long long)((1ull << 50) | 0x200003ull));
        if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
            run_case(&c, &r);
            big_maxphyaddr_ok = r.kind == WRES_OK && r.gpa == ((1ull << 50) | 0x200000ull);
            if (verbose)
                fprintf(stderr, "kvm_mmu: probe maxphyaddr 52: kind %d gpa 0x%llx %s\n", r.kind,
                        (unsigned long long)r.gpa, r.reason);
        }
    }
}

static void probe_user_slot256(void)
{
    struct wcase c;
    struct wresult r;
    char reason[96];
    const char *line = "mode=amd64 cpl=3 acc=r va=0xffff800000001000 cr3=0x10000 "
                       "mem=0x10800:0x11007,0x11000:0x12007,0x12000:0x13007,0x13008:0x200007";

    if (wcase_parse(line, &c, reason, sizeof(reason)) == 1) {
        run_case(&c, &r);
        user_slot256_broken = r.kind != WRES_OK;
        if (verbose && user_slot256_broken)
            fprintf(stderr, "kvm_mmu: probe: CPL3 read in PML4 slot 256 gives kind %d ec 0x%x; "
                            "such cases are skipped\n", r.kind, r.ec);
    }
}

/* SMEP/SMAP are usable if KVM accepts the CR4 bit once the guest CPUID has it. */
static bool probe_cr4_bit(unsigned bit)
{
    struct vm *v = vm_get(host_maxphyaddr);
    struct kvm_sregs sr;
    bool ok;

    if (ioctl(v->vcpu, KVM_GET_SREGS, &sr) < 0)
        die("KVM_GET_SREGS");
    sr.cr4 |= 1ull << bit;
    ok = ioctl(v->vcpu, KVM_SET_SREGS, &sr) == 0;
    return ok;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: kvm_mmu [-v] [--amd] [--probe | --gen-flags] < cases > results\n"
                    "  Runs each amd64 case on a KVM vCPU; prints one result line per case.\n"
                    "  --probe      print what the host KVM supports and exit\n"
                    "  --gen-flags  print the gen_cases options that fit this host\n"
                    "  --amd        guest CPUID vendor AuthenticAMD (default GenuineIntel)\n"
                    "  Exit 77 if /dev/kvm is unusable.\n");
}

int main(int argc, char **argv)
{
    char *line = NULL;
    size_t cap = 0;
    bool probe_only = false, gen_flags = false;
    unsigned long ncases = 0, nskip = 0, nerr = 0;
    struct timespec t0, t1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = true;
        else if (!strcmp(argv[i], "--probe"))
            probe_only = true;
        else if (!strcmp(argv[i], "--gen-flags"))
            gen_flags = true;
        else if (!strcmp(argv[i], "--amd"))
            guest_amd = true;
        else {
            usage();
            return 2;
        }
    }
    {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

        if (fd < 0) {
            fprintf(stderr, "kvm_mmu: /dev/kvm unusable: %s\n", strerror(errno));
            return 77;
        }
        close(fd);
    }

    kvm_init();
    /* The guest CPUID of every VM gets SMEP/SMAP if KVM accepts the CR4 bits. */
    {
        bool s1 = have_smep, s2 = have_smap;

        have_smep = have_smap = true;
        s1 = s1 || probe_cr4_bit(20);
        s2 = s2 || probe_cr4_bit(21);
        have_smep = s1;
        have_smap = s2;
        /* the probe VM was created with both bits in CPUID; drop it */
        vm_drop(host_maxphyaddr);
    }
    probe_maxphyaddr();
    probe_user_slot256();
    if (verbose || probe_only)
        fprintf(stderr,
                "kvm_mmu: guest vendor %s; host MAXPHYADDR %u; NX %d SMEP %d SMAP %d PKU %d GBPAGES %d LA57 %d; "
                "guest MAXPHYADDR below host %s, above host %s%s\n",
                guest_amd ? "AMD" : "Intel", host_maxphyaddr, have_nx, have_smep, have_smap, have_pku, have_gbpages,
                have_la57, small_maxphyaddr_ok ? "honoured" : "ignored (such cases skipped)",
                big_maxphyaddr_ok ? "works" : "broken (such cases skipped)",
                user_slot256_broken ? "; CPL3 accesses to PML4 slot 256 broken (skipped)" : "");
    if (gen_flags) {
        /* gen_cases options restricting cases to what this host can run */
        printf("%s%s%s%s%s", have_pku ? "" : " --no-pku", have_gbpages ? "" : " --no-gbpages",
               have_smep ? "" : " --no-smep", have_smap ? "" : " --no-smap",
               have_nx ? "" : " --no-nx");
        if (!small_maxphyaddr_ok || !big_maxphyaddr_ok)
            printf(" --maxphyaddr %u", host_maxphyaddr);
        printf("\n");
        return 0;
    }
    if (probe_only)
        return 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (getline(&line, &cap, stdin) >= 0) {
        struct wcase c;
        struct wresult r;
        char reason[96], out[WCASE_LINE_MAX];
        int k;

        line[strcspn(line, "\r\n")] = '\0';
        k = wcase_parse(line, &c, reason, sizeof(reason));
        if (k == 0)
            continue;
        ncases++;
        if (k < 0) {
            printf("error=%s\n", reason);
            continue;
        }
        run_case(&c, &r);
        nskip += r.kind == WRES_SKIP;
        nerr += r.kind == WRES_ERROR;
        wresult_format(&r, &c, out, sizeof(out));
        printf("%s\n", out);
    }
    free(line);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (verbose)
        fprintf(stderr, "kvm_mmu: %lu cases, %lu skipped, %lu errors, %.3f s\n", ncases, nskip,
                nerr, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
