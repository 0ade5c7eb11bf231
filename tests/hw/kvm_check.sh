#!/bin/sh
# SPDX-License-Identifier: MIT
#
# kvm_check.sh PGM GEN_CASES KVM_MMU COMPARE
#
# Generates random amd64 walk cases, runs them through `PGM walk` and through
# kvm_mmu (the same accesses really executed on a KVM vCPU) and compares the
# results. Exits 77 (skip) when /dev/kvm is absent or unusable.
#
# Environment: KVM_CHECK_SEED (default 20250101), KVM_CHECK_COUNT (3000),
# KVM_CHECK_MIN (minimum compared, default a third of the count),
# KVM_CHECK_KEEP=1 keeps the work directory.
set -u

if [ $# -ne 4 ]; then
    echo "usage: $0 PGM GEN_CASES KVM_MMU COMPARE" >&2
    exit 2
fi
pgm=$1
gen=$2
kvm=$3
cmp=$4
seed=${KVM_CHECK_SEED:-20250101}
count=${KVM_CHECK_COUNT:-3000}
min=${KVM_CHECK_MIN:-$((count / 3))}

if [ ! -e /dev/kvm ]; then
    echo "SKIP: /dev/kvm does not exist (no KVM on this machine)"
    exit 77
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "SKIP: /dev/kvm is not readable and writable by this user"
    exit 77
fi
# Bound every kvm_mmu run, should a guest or KVM wedge.
tmo=
if command -v timeout > /dev/null 2>&1; then
    tmo="timeout"
fi
bounded() {
    secs=$1
    shift
    if [ -n "$tmo" ]; then
        "$tmo" "$secs" "$@"
    else
        "$@"
    fi
}

if ! probe=$(bounded 60 "$kvm" --probe 2>&1); then
    echo "SKIP: KVM is not usable: $probe"
    exit 77
fi
echo "$probe"
if ! flags=$(bounded 60 "$kvm" --gen-flags 2>/dev/null); then
    echo "SKIP: kvm_mmu --gen-flags failed"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kvm_check.XXXXXX") || exit 2
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ "${KVM_CHECK_KEEP:-0}" = 1 ] || [ "${failed:-0}" = 1 ]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
failed=1

# shellcheck disable=SC2086 # flags is a list of options
"$gen" --seed "$seed" --count "$count" --mode amd64 $flags > "$work/cases" || exit 2
echo "generated $count amd64 cases (seed $seed, options:${flags:- none})"

t0=$(date +%s)
if ! "$pgm" walk < "$work/cases" > "$work/pgm.out" 2> "$work/pgm.err"; then
    echo "FAIL: $pgm walk exited with an error:"
    head -20 "$work/pgm.err"
    exit 1
fi
t1=$(date +%s)
bounded 450 "$kvm" -v < "$work/cases" > "$work/kvm.out" 2> "$work/kvm.err"
rc=$?
if [ $rc -ne 0 ]; then
    if [ $rc -eq 77 ]; then
        echo "SKIP: kvm_mmu could not use KVM"
        cat "$work/kvm.err"
        failed=0
        exit 77
    fi
    echo "FAIL: kvm_mmu exited with $rc:"
    head -20 "$work/kvm.err"
    exit 1
fi
t2=$(date +%s)
grep -v '^kvm_mmu: probe' "$work/kvm.err"
echo "pgm walk: $((t1 - t0)) s, kvm_mmu: $((t2 - t1)) s"
echo "skip reasons (kvm_mmu):"
grep '^skip=' "$work/kvm.out" | sort | uniq -c | sort -rn

"$cmp" --min "$min" "$work/cases" "$work/pgm.out" "$work/kvm.out"
rc=$?
if [ $rc -eq 0 ]; then
    failed=0
fi
exit $rc
