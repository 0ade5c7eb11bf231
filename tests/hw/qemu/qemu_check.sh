#!/bin/sh
# SPDX-License-Identifier: MIT
#
# qemu_check.sh PGM GEN_CASES QEMU_MMU COMPARE SDM_CASES SDM_EXPECTED
#
# Checks `PGM walk` against QEMU's TCG MMU in the paging modes KVM cannot
# give us here: 32-bit paging (PSE, PSE-36 with MAXPHYADDR 40), PAE, 4-level
# with PKU and 1 GiB pages, and 5-level (LA57). First validates the harness on
# hand-written SDM cases, then generates random cases per mode, runs them
# through both and compares. Exits 77 (skip) if qemu-system-x86_64 is not
# installed.
#
# Environment: QEMU_CHECK_SEED (default 20250101), QEMU_CHECK_COUNT (cases
# per mode, default 2000), QEMU_CHECK_MODES (default "32 pae amd64 la57"),
# QEMU_CHECK_KEEP=1 keeps the work directory.
set -u

if [ $# -ne 6 ]; then
    echo "usage: $0 PGM GEN_CASES QEMU_MMU COMPARE SDM_CASES SDM_EXPECTED" >&2
    exit 2
fi
pgm=$1
gen=$2
qemu=$3
cmp=$4
sdm_cases=$5
sdm_expected=$6
seed=${QEMU_CHECK_SEED:-20250101}
count=${QEMU_CHECK_COUNT:-2000}
modes=${QEMU_CHECK_MODES:-32 pae amd64 la57}

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "SKIP: qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/qemu_check.XXXXXX") || exit 2
failed=1
cleanup() {
    if [ "${QEMU_CHECK_KEEP:-0}" = 1 ] || [ "$failed" = 1 ]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# 1. the harness against the SDM
"$qemu" < "$sdm_cases" > "$work/sdm.out"
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: qemu_mmu cannot run QEMU here"
    failed=0
    exit 77
fi
if [ $rc -ne 0 ]; then
    echo "FAIL: qemu_mmu exited with $rc on the SDM cases"
    exit 1
fi
if ! "$cmp" --min 39 "$sdm_cases" "$sdm_expected" "$work/sdm.out" > "$work/sdm.cmp"; then
    echo "FAIL: the QEMU harness disagrees with the SDM-derived answers:"
    cat "$work/sdm.cmp"
    exit 1
fi
echo "harness vs SDM cases: $(tail -1 "$work/sdm.cmp")"

# 2. random cases per mode
total_cmp=0
total_bad=0
total_skip=0
rc_all=0
i=0
for mode in $modes; do
    i=$((i + 1))
    case $mode in
    32) opts="--maxphyaddr 40" ;; # PSE-36: QEMU decodes 40 bits (README.md)
    *) opts="" ;;
    esac
    s=$((seed + i))
    # shellcheck disable=SC2086 # opts is a list of options
    "$gen" --seed "$s" --count "$count" --mode "$mode" $opts > "$work/$mode.cases" || exit 2
    t0=$(date +%s%N)
    if ! "$pgm" walk < "$work/$mode.cases" > "$work/$mode.pgm" 2> "$work/$mode.pgm.err"; then
        echo "FAIL: $pgm walk exited with an error on mode $mode:"
        head -20 "$work/$mode.pgm.err"
        exit 1
    fi
    t1=$(date +%s%N)
    if ! "$qemu" -v < "$work/$mode.cases" > "$work/$mode.qemu" 2> "$work/$mode.qemu.err"; then
        echo "FAIL: qemu_mmu exited with an error on mode $mode:"
        head -20 "$work/$mode.qemu.err"
        exit 1
    fi
    t2=$(date +%s%N)
    "$cmp" --min $((count / 2)) "$work/$mode.cases" "$work/$mode.pgm" "$work/$mode.qemu" \
        > "$work/$mode.cmp"
    rc=$?
    summary=$(tail -1 "$work/$mode.cmp")
    echo "mode $mode: $count cases (seed $s${opts:+, $opts}): $summary;" \
        "pgm $(((t1 - t0) / 1000000)) ms, qemu_mmu $(((t2 - t1) / 1000000)) ms"
    grep '^skip=' "$work/$mode.qemu" | sort | uniq -c | sort -rn | sed 's/^/    /'
    if [ $rc -ne 0 ]; then
        rc_all=1
        head -60 "$work/$mode.cmp"
    fi
    set -- $summary
    total_cmp=$((total_cmp + $1))
    total_bad=$((total_bad + $3))
    total_skip=$((total_skip + $5))
done

echo "qemu_walk: $((total_cmp - total_bad)) passed, $total_bad failed, $total_skip skipped"
if [ $rc_all -eq 0 ]; then
    failed=0
fi
exit $rc_all
