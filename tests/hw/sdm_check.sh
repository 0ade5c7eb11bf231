#!/bin/sh
# SPDX-License-Identifier: MIT
#
# sdm_check.sh COMPARE CASES EXPECTED MIN PROGRAM [ARGS...]
#
# Runs PROGRAM ARGS < CASES and compares its results with EXPECTED (results
# derived by hand from the SDM) using COMPARE; at least MIN cases must be
# compared. Exits 77 (skip) if PROGRAM exits 77 (e.g. kvm_mmu without KVM).
set -u

if [ $# -lt 5 ]; then
    echo "usage: $0 COMPARE CASES EXPECTED MIN PROGRAM [ARGS...]" >&2
    exit 2
fi
cmp=$1
cases=$2
expected=$3
min=$4
shift 4

out=$(mktemp "${TMPDIR:-/tmp}/sdm_check.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT

"$@" < "$cases" > "$out"
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: $1 cannot run here (exit 77)"
    exit 77
fi
if [ $rc -ne 0 ]; then
    echo "FAIL: $* exited with $rc"
    exit 1
fi
grep '^skip=' "$out" | sort | uniq -c
"$cmp" --min "$min" "$cases" "$expected" "$out"
