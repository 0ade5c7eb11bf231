/* SPDX-License-Identifier: MIT */
/* The soft backend's host-page arena. */
#include <errno.h>
#include <string.h>

#include "tests/unit/fixture.h"

static void
test_arena(void **state)
{
    (void)state;
    struct pgm_soft_backend *sb;
    assert_int_equal(pgm_soft_backend_create(0, &sb), -EINVAL);
    assert_int_equal(pgm_soft_backend_create((1ull << 28) + 1, &sb), -EINVAL);
    assert_int_equal(pgm_soft_backend_create(600, &sb), 0); /* spans two 2 MiB chunks */
    const struct pgm_backend_ops *ops = pgm_soft_backend_ops();

    static pgm_hpa_t hpa[600];
    static void *ptr[600];
    for (int i = 0; i < 600; i++) {
        assert_int_equal(ops->alloc_page(sb, &hpa[i], &ptr[i]), 0);
        assert_true(hpa[i] >= PGM_SOFT_HPA_BASE);
        assert_int_equal(hpa[i] & 0xfff, 0);
        assert_ptr_equal(ops->hpa_to_ptr(sb, hpa[i]), ptr[i]);
        assert_ptr_equal(ops->hpa_to_ptr(sb, hpa[i] + 0x123), (uint8_t *)ptr[i] + 0x123);
        for (int j = 0; j < i; j++)
            assert_true(hpa[j] != hpa[i]);
        memset(ptr[i], 0xa5, 4096);
    }
    pgm_hpa_t extra;
    void *extra_ptr;
    assert_int_equal(ops->alloc_page(sb, &extra, &extra_ptr), -ENOMEM);
    assert_int_equal(pgm_soft_backend_pages_in_use(sb), 600);

    ops->free_page(sb, hpa[17], ptr[17]);
    assert_null(ops->hpa_to_ptr(sb, hpa[17])); /* a freed page is not a page */
    assert_null(ops->hpa_to_ptr(sb, 0));
    assert_null(ops->hpa_to_ptr(sb, PGM_SOFT_HPA_BASE + (600ull << 12)));
    assert_int_equal(ops->alloc_page(sb, &extra, &extra_ptr), 0);
    assert_true(extra == hpa[17]);
    for (int i = 0; i < 4096; i++)
        assert_int_equal(((uint8_t *)extra_ptr)[i], 0); /* handed out zeroed again */

    pgm_soft_backend_fail_after(sb, 0);
    ops->free_page(sb, hpa[3], ptr[3]);
    assert_int_equal(ops->alloc_page(sb, &extra, &extra_ptr), -ENOMEM);
    pgm_soft_backend_fail_after(sb, -1);
    assert_int_equal(ops->alloc_page(sb, &extra, &extra_ptr), 0);
    pgm_soft_backend_destroy(sb);
    pgm_soft_backend_destroy(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests_name("soft_backend", tests, NULL, NULL);
}
