/* SPDX-License-Identifier: MIT */
/*
 * Caller bugs in the pool and reverse maps.
 *
 * A call that breaks the pool's contract (freeing a pinned page, removing a
 * reverse-map reference that is not there, allocating without a reserve)
 * is a bug in the shadow engine, not a runtime condition. Debug builds stop
 * at the assertion so the bug is found where it happens; release builds
 * (NDEBUG) and tests that want to observe the outcome get the documented
 * negative errno and an unchanged structure instead.
 */
#ifndef PGM_SRC_POOL_BUG_H
#define PGM_SRC_POOL_BUG_H

#include <assert.h>
#include <stdbool.h>

/*
 * @strict: the owning structure's `assert_on_bug` flag (true by default;
 * unit tests clear it to check return codes). @what: a string literal.
 */
#ifdef NDEBUG
#define PGM_POOL_BUG(strict, what) ((void)(strict))
#else
#define PGM_POOL_BUG(strict, what) assert(!(strict) && (what))
#endif

#endif /* PGM_SRC_POOL_BUG_H */
