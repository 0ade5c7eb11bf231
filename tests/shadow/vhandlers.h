/* SPDX-License-Identifier: MIT */
/*
 * Virtual handlers in the random OS: WRITE and ALL handlers registered on
 * and removed from random pages of random processes, and a check after
 * every checked access that the handler was called exactly when the
 * model says it must be - the access completed, on a vCPU running the
 * handler's address space, inside its range, and (WRITE) it was a write -
 * with the linear address and the GPA the walk gave. The callbacks answer
 * DEFAULT, so every other check of the suite still holds.
 */
#ifndef PGM_TESTS_SHADOW_VHANDLERS_H
#define PGM_TESTS_SHADOW_VHANDLERS_H

#include "guest.h"

/* Attach the model to @p k (sets its access hook). */
void g_vh_init(struct g_kernel *k);
/* Register a handler on a page of address space @p as, or remove one. */
void g_vh_step(struct g_kernel *k, int as, uint64_t r);
/* Address space @p as is about to be destroyed: drop its handlers. */
void g_vh_as_destroyed(struct g_kernel *k, int as);
/* Detach and free. @return the handler calls checked. */
uint64_t g_vh_fini(struct g_kernel *k);

#endif /* PGM_TESTS_SHADOW_VHANDLERS_H */
