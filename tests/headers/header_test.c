/* SPDX-License-Identifier: MIT */
/* Compiles one public header alone (PGM_TEST_HEADER) to prove it is self-contained. */
#include PGM_TEST_HEADER
#include PGM_TEST_HEADER /* and that its include guard works */

int
main(void)
{
    return 0;
}
