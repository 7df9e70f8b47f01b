#!/usr/bin/env bash
# Builds the built-in policy guests (policies/guests/*.c) to WebAssembly with clang and lld:
#   bash scripts/build_policies.sh [OUT_DIR]     (default: policies/guests)
# `--check` builds into a temporary folder and fails when a committed .wasm differs.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
out=policies/guests
if [[ "${1:-}" == "--check" ]]; then check=1; out=$(mktemp -d); elif [[ -n "${1:-}" ]]; then out=$1; fi
for tool in clang wasm-ld; do
  command -v "$tool" >/dev/null || { echo "build_policies: $tool is missing: apt-get install -y clang lld" >&2; exit 1; }
done
for src in policies/guests/*.c; do
  name=$(basename "$src" .c)
  clang --target=wasm32 -O2 -nostdlib -ffreestanding -Wall -Werror -Wl,--no-entry -Wl,--strip-all \
    -I policies/include -I policies/guests -o "$out/$name.wasm" "$src"
done
if [[ $check == 1 ]]; then
  status=0
  for f in "$out"/*.wasm; do
    name=$(basename "$f")
    if ! cmp -s "$f" "policies/guests/$name"; then
      echo "build_policies: policies/guests/$name differs from a fresh build: run bash scripts/build_policies.sh and commit" >&2
      status=1
    fi
  done
  rm -rf "$out"
  exit $status
fi
echo "built $(ls policies/guests/*.wasm | wc -l) guests into $out"
