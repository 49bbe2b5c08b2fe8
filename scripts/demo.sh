#!/usr/bin/env bash
# The main job end to end on the embedded defaults. Run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mcslabel
section() { printf '\n== %s\n' "$*"; }

section "installed policy and its container contexts"
$M policy

section "levels: parse, canonical form, errors"
for l in 's0:c2,c1' 's0:c0,c1,c2,c7' 's0-s0:c0.c1023' 'system_u:object_r:container_file_t:s0:c5,c9'; do
  printf '%-45s -> %s\n' "$l" "$($M check "$l")"
done
for bad in 's0:c1024' 'SystemLow' 's0:c5.c3'; do
  printf '%-45s -> ' "$bad"; $M check "$bad" 2>&1 || true
done
