#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run `pgm walk` on the cases of a golden file and compare with the
hand-written "=> " lines. Usage: check_golden.py PGM GOLDEN"""
import subprocess
import sys

pgm, golden = sys.argv[1], sys.argv[2]
cases, expected = [], []
for raw in open(golden):
    line = raw.rstrip("\n")
    if line.startswith("=> "):
        expected.append(line[3:])
    elif line.strip() and not line.startswith("#"):
        cases.append(line)
if len(cases) != len(expected):
    sys.exit(f"golden file malformed: {len(cases)} cases, {len(expected)} expectations")
# Blank and comment lines in the input must produce no output line.
stdin = "\n# a comment\n\n".join(cases) + "\n"
out = subprocess.run([pgm, "walk"], input=stdin, capture_output=True, text=True, check=True)
got = out.stdout.splitlines()
bad = 0
if len(got) != len(cases):
    print(f"expected {len(cases)} output lines, got {len(got)}")
    bad += 1
for c, e, g in zip(cases, expected, got):
    if e != g:
        bad += 1
        print(f"case:     {c}\nexpected: {e}\ngot:      {g}\n")
print(f"{len(cases) - bad} of {len(cases)} golden walk cases match")
sys.exit(1 if bad else 0)
