/* SPDX-License-Identifier: MIT */
/*
 * fuzz_alloc: the fuzz_trap0e scenario with allocation failures. The VM gets
 * an allocator (cfg.allocator) that fails at an input-chosen allocation
 * (that one only, or every one from there on), the soft backend fails its
 * page and block allocations after an input-chosen count
 * (pgm_soft_backend_fail_after), and operations may re-arm or disarm both.
 * Every failure must come back as a negative result: never a crash, a leak
 * (LeakSanitizer, and every soft-backend page returned at pgm_vm_destroy),
 * a shadow entry pointing at no page (-EIO), or a pgm_audit violation; and
 * whatever still claims success is checked against the guest walk as in
 * fuzz_trap0e. Input format: trap0e_scenario.c (bytes 12-14 and op 8).
 */
#include "trap0e_scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct trap0e_opts opts = { .inject_failures = true };
    return trap0e_run(data, size, &opts);
}
