#!/usr/bin/env bash
# Fills the seed corpora of the fuzz targets (corpus/onnx_import, corpus/onnx_reference):
#  - the nine light_*.onnx models shipped in the Python `onnx` package (required);
#  - the thirteen small generated models of scripts/gen_onnx_models.py (needs onnxruntime and
#    numpy; skipped with a warning when the generator fails, or with --light-only).
# Existing corpus files are kept. Usage: bash seed_corpus.sh [--light-only]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
light_only=0
for arg in "$@"; do
    case "$arg" in
        --light-only) light_only=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

targets=(onnx_import onnx_reference)
for t in "${targets[@]}"; do mkdir -p "$here/corpus/$t"; done

light="$("$python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light"))')" \
    || { echo "the Python onnx package is missing: run scripts/setup.sh" >&2; exit 1; }
shopt -s nullglob
models=("$light"/light_*.onnx)
if [ "${#models[@]}" -lt 9 ]; then
    echo "expected 9 light_*.onnx models in $light, found ${#models[@]}" >&2
    exit 1
fi
for t in "${targets[@]}"; do cp "${models[@]}" "$here/corpus/$t/"; done
echo "copied ${#models[@]} light models from $light"

if [ "$light_only" -eq 0 ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if "$python" "$root/scripts/gen_onnx_models.py" "$tmp" > "$tmp/gen.log" 2>&1; then
        generated=("$tmp"/*.onnx)
        for t in "${targets[@]}"; do cp "${generated[@]}" "$here/corpus/$t/"; done
        echo "copied ${#generated[@]} generated models"
    else
        echo "warning: scripts/gen_onnx_models.py failed (onnxruntime missing?); light models only:" >&2
        tail -n 3 "$tmp/gen.log" >&2
    fi
fi

for t in "${targets[@]}"; do
    dir="$here/corpus/$t"
    n=$(find "$dir" -type f | wc -l)
    largest=$(find "$dir" -type f -printf '%s\n' | sort -n | tail -n 1)
    echo "corpus/$t: $n files, largest $largest bytes"
done
