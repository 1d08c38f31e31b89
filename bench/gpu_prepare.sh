#!/usr/bin/env bash
# Prepare what bench/gpu.sh needs on a bare GPU machine without network, into build/gpu-carry/
# (ignored by git: /build/ in .gitignore). Run here, where PyPI and Debian's packages are reachable:
#
#   bash bench/gpu_prepare.sh [--python 3.12] [--python 3.11] ...
#
# build/gpu-carry/
#   wheels/any/     pure-Python wheels and wgpu (its wgpu-native library does not depend on Python)
#   wheels/cpXY/    numpy, cffi, pyyaml built for CPython X.Y, one folder per --python
#   debs/           Debian's Vulkan loader (libvulkan1) and the GL/EGL dispatch libraries beside it
#                   (libglvnd0 ...: NVIDIA's Vulkan driver is implemented in libGLX_nvidia, which needs
#                   libGLdispatch), unpacked there only where the machine lacks a library they hold
#   skeletons/      the headers (metadata, tokenizer, tensor table) of the real SmolLM2-135M Q4_1 and
#                   Gemma-3-270M Q4_K_M files, from which bench/synth_model.py writes the same files
#                   with random weights there (the real files, 94 and 242 MB, cannot travel: a device
#                   call carries at most 64 MiB in all)
#
# The versions are the ones in this checkout's .venv, so the code tested here runs there. By default
# wheels are fetched for Python 3.12 (the GPU machine's python3) and for this machine's python3 (so
# that `bash bench/gpu.sh --quick` can prove here, on lavapipe, that the carried wheels suffice).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=build/gpu-carry
VENV_PY=.venv/bin/python
versions=()
while [ $# -gt 0 ]; do
    case "$1" in
        --python) versions+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu_prepare.sh: unknown option $1 (expected --python X.Y)" >&2; exit 2 ;;
    esac
done
if [ ${#versions[@]} -eq 0 ]; then
    versions=(3.12 "$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')")
fi
[ -x "$VENV_PY" ] || { echo "gpu_prepare.sh: $VENV_PY is missing: run scripts/setup.sh first" >&2; exit 2; }

version_of() { "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# What wgllm's bench path imports (wgllm.bench, wgllm.gpu, wgllm.model, wgllm.tokenizer): numpy,
# gguf (which imports yaml), wgpu (cffi, which needs pycparser). Nothing else is imported there:
# gpu.sh runs from the checkout with PYTHONPATH=py, so wgllm itself needs no wheel.
ANY=(gguf wgpu pycparser)
PER_PYTHON=(numpy cffi pyyaml)

rm -rf "$CARRY/wheels" "$CARRY/debs"
mkdir -p "$CARRY/wheels/any" "$CARRY/debs" "$CARRY/skeletons"
download() {  # download PYTHON_VERSION DEST NAME...
    local py=$1 dest=$2; shift 2
    local specs=()
    for name in "$@"; do specs+=("$name==$(version_of "$name")"); done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        "${PLATFORMS[@]}" -d "$dest" "${specs[@]}"
}
download "${versions[0]}" "$CARRY/wheels/any" "${ANY[@]}"
for v in "${versions[@]}"; do
    tag="cp${v/./}"
    mkdir -p "$CARRY/wheels/$tag"
    download "$v" "$CARRY/wheels/$tag" "${PER_PYTHON[@]}"
done

# Debian's packages for amd64 whatever this machine is, with their own package lists (the device
# README's recipe).
mkdir -p /tmp/amd64/partial
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${apt_opts[@]}" update -qq
(cd "$CARRY/debs" && apt-get "${apt_opts[@]}" download -qq libvulkan1 libglvnd0 libgl1 libglx0 libegl1 libopengl0 libgles2)

# The real models' headers (fetched into ~/.cache/wgllm by the test assets if not there yet).
PYTHONPATH=py:tests/py "$VENV_PY" - "$CARRY/skeletons" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import assets
from synth_model import save_skeleton

out = Path(sys.argv[1])
for name, path in (("smollm2-135m-q4_1", assets.smollm2_path()), ("gemma3-270m-q4_k_m", assets.gemma3_path())):
    save_skeleton(path, out / name)
    print(f"skeleton {name} <- {path}")
EOF

echo "build/gpu-carry:"
du -sh "$CARRY"/wheels/* "$CARRY"/debs "$CARRY"/skeletons
tree_bytes=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 du -cb 2>/dev/null | awk '/total$/ {s += $1} END {print s + 0}')
carry_bytes=$(du -sb "$CARRY" | cut -f1)
total=$((tree_bytes + carry_bytes))
echo "a device call carries the working tree ($((tree_bytes >> 20)) MiB) + $CARRY ($((carry_bytes >> 20)) MiB) = $((total >> 20)) MiB of at most 64 MiB"
if [ "$total" -gt $((62 << 20)) ]; then
    echo "gpu_prepare.sh: warning: that is near or over the limit; fetch fewer Python versions (--python 3.12 alone)" >&2
fi
