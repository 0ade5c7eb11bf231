/* SPDX-License-Identifier: MIT */
/* Public paging entry points that dispatch to the current mode's ops. */
#include <errno.h>

#include "pgm/paging.h"
#include "src/vm.h"

#define ACCESS_KNOWN (PGM_ACCESS_WRITE | PGM_ACCESS_USER | PGM_ACCESS_FETCH | \
                      PGM_ACCESS_IMPLICIT | PGM_ACCESS_AC | PGM_ACCESS_NO_AD)

PGM_API int
pgm_walk(struct pgm_vcpu *vcpu, pgm_gva_t gva, uint32_t access, struct pgm_walk *walk)
{
    if (!vcpu || !walk || (access & ~(uint32_t)ACCESS_KNOWN))
        return -EINVAL;
    /* A fetch is not a write; an implicit access is a supervisor access. */
    if ((access & PGM_ACCESS_FETCH) && (access & PGM_ACCESS_WRITE))
        return -EINVAL;
    if ((access & PGM_ACCESS_IMPLICIT) && (access & PGM_ACCESS_USER))
        return -EINVAL;
    vcpu->stats.walks++;
    return vcpu->gops->walk(vcpu, gva, access, walk);
}
