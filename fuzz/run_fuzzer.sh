#!/bin/sh
# SPDX-License-Identifier: MIT
# Bounded libFuzzer run: run_fuzzer.sh TARGET SEED_CORPUS WORKDIR SECONDS
# Starts from a copy of the seed corpus; fails on any crash, leak, timeout or
# invariant violation (the targets abort) and prints the reproducer's path.
set -u
target=$1 seeds=$2 work=$3 seconds=$4
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/" 2>/dev/null || true
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
rc=$?
tail -n 8 "$work/log"
if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
    echo "FUZZER FAILED (exit $rc). Reproducer(s):"
    ls -1 "$work/artifacts"/* 2>/dev/null | sed 's/^/  /'
    echo "Reproduce: $target <file>; add it to $seeds to keep it as a regression test."
    exit 1
fi
echo "fuzzer ran $seconds s without a failure"
