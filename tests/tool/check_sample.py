#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shipped sample must run: one result per case, none an error."""
import subprocess
import sys

pgm, sample = sys.argv[1], sys.argv[2]
cases = [l for l in open(sample) if l.strip() and not l.lstrip().startswith("#")]
out = subprocess.run([pgm, "walk"], stdin=open(sample), capture_output=True, text=True,
                     check=True).stdout.splitlines()
errors = [l for l in out if l.startswith("error=")]
if len(out) != len(cases) or errors:
    sys.exit(f"{len(cases)} cases, {len(out)} results, errors: {errors}")
print(f"{len(cases)} sample cases ran")
