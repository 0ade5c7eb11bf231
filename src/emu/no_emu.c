/* SPDX-License-Identifier: MIT */
/* pgm_emulate_insn in a build without Capstone: there is no decoder. */
#include <errno.h>

#include "pgm/paging.h"

PGM_API int
pgm_emulate_insn(struct pgm_vcpu *vcpu, struct pgm_regs *regs, struct pgm_fault_out *out)
{
    (void)vcpu;
    (void)regs;
    (void)out;
    return -ENOTSUP;
}
