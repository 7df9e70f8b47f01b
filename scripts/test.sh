#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what is missing (scripts/setup.sh,
# and cargo-deb for the package test),
# checks that the committed WebAssembly policy guests match their sources, runs every test of
# the workspace, and ends with one line "tests: N passed, N failed".
# GPU tests run on the first wgpu adapter (lavapipe on CPU-only machines); set
# POOLPIPE_TEST_ADAPTER (e.g. "1" or "vendor:nvidia") to pick another.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# cargo-deb builds the Debian package that tests/package.rs checks (and installs, as root).
if ! cargo deb --version >/dev/null 2>&1; then
    echo "test: installing cargo-deb" >&2
    cargo install --quiet --locked cargo-deb --version 3.8.0
fi
# The committed policy guests must be what their C sources build to.
bash scripts/build_policies.sh --check
# Mesa warns on stderr when XDG_RUNTIME_DIR is unset; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/poolpipe-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

log=$(mktemp)
status=0
# --no-fail-fast: every test binary runs even after one fails, so the count is complete.
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# Two endpoints in two network namespaces joined by a veth pair: needs root (CI runs as root).
if [ "$(id -u)" = 0 ]; then
    cargo test --locked -p poolpipe-transport --test netns -- --ignored 2>&1 | tee -a "$log" || status=$?
else
    echo "the network-namespace transport test needs root: run scripts/test.sh as root" | tee -a "$log"
    echo "test result: FAILED. 0 passed; 1 failed" >> "$log"
    status=1
fi
count() { grep -E '^test result:' "$log" | grep -Eo "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
echo "tests: $(count passed) passed, $(count failed) failed"
rm -f "$log"
exit "$status"
