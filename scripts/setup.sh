#!/usr/bin/env bash
# Sets up a fresh Debian machine for poolpipe: installs only what is missing.
#  - mesa-vulkan-drivers: lavapipe, a software Vulkan driver, so wgpu has an adapter on
#    CPU-only machines (the tests need one and fail without it);
#  - clang and lld: build the WebAssembly scheduling-policy guests (C -> wasm32);
#  - iproute2: `ip netns` and veth pairs for the transport test across network namespaces;
#  - Python onnx (pinned), onnxruntime, numpy: outside oracles for the ONNX model-import tests;
#  - Python scipy: HiGHS (scipy.optimize.milp), the planner's outside oracle.
# Rust itself (cargo) must already be installed.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for pkg in mesa-vulkan-drivers clang lld iproute2; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# onnx is pinned: engine/tests/onnx_node_pass.txt lists the node cases of this version that pass.
onnx_pin=1.23.2
if ! python3 -c "import onnx, onnxruntime, numpy; assert onnx.__version__ == '$onnx_pin'" 2>/dev/null; then
    echo "setup: installing Python onnx==$onnx_pin, onnxruntime, numpy" >&2
    python3 -m pip install --quiet --disable-pip-version-check "onnx==$onnx_pin" onnxruntime numpy 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "onnx==$onnx_pin" onnxruntime numpy
fi

if ! python3 -c "import scipy.optimize; scipy.optimize.milp" 2>/dev/null; then
    echo "setup: installing Python scipy (HiGHS, the planner's oracle)" >&2
    python3 -m pip install --quiet --disable-pip-version-check scipy 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages scipy
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "setup: ready" >&2
