#!/usr/bin/env bash
# wgllm on a real GPU, in one run of at most 8 minutes, on a bare x86-64 Linux machine with a GPU and
# its Vulkan driver, no network and nothing installed but Python 3 (bench/NOTES.md, "Real GPU").
#
#   bash bench/gpu_prepare.sh         # once, where PyPI and Debian are reachable: build/gpu-carry/
#   bash bench/gpu.sh [--quick] [--budget SECONDS] [-- gpu_bench.py options]
#
# 1. Vulkan loader: where `ldconfig -p` lacks a library that build/gpu-carry/debs/ holds
#    (libvulkan.so.1, libGLdispatch.so.0 ...), that package is unpacked into / (dpkg -x; root).
#    NVIDIA's driver manifest is pointed to with VK_DRIVER_FILES when no loader search path has it.
# 2. Python packages: the carried wheels (build/gpu-carry/wheels/any and /cpXY for this python3)
#    are unzipped into a fresh folder, and python3 runs with -S (no site-packages) and
#    PYTHONPATH=<that folder>:py, so only the carried packages and this checkout's wgllm are used.
# 3. bench/gpu_bench.py with what is left of the budget (default 480 s from this script's start):
#    the JSON goes to $OUT/gpu-bench.json when $OUT is set (the device tool brings $OUT back), else
#    to bench/results/DATE-ADAPTER-gpu-bench.json; the printed report goes to $OUT/gpu-bench.log too.
#
# --quick: small shapes, a tiny model and SmolLM2's skeleton, 8+4 tokens: to check the script
# itself on any adapter (lavapipe here) in a minute or two.
set -euo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
CARRY=${WGLLM_GPU_CARRY:-build/gpu-carry}
PY=${PYTHON:-python3}
budget=480
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) extra+=(--quick); shift ;;
        --budget) budget=$2; shift 2 ;;
        --) shift; extra+=("$@"); break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (expected --quick, --budget SECONDS or -- OPTIONS for gpu_bench.py)" >&2; exit 2 ;;
    esac
done
say() { echo "gpu.sh: $*"; }
[ -d "$CARRY/wheels/any" ] || { echo "gpu.sh: $CARRY/wheels is missing: run bash bench/gpu_prepare.sh first (and carry $CARRY)" >&2; exit 2; }

# -- 1. Vulkan loader ------------------------------------------------------------------------------
have_lib() { ldconfig -p 2>/dev/null | grep -q "/$1\$"; }
export WGLLM_GPU_LOADER=system
for deb in "$CARRY"/debs/*.deb; do
    [ -e "$deb" ] || continue
    # the package's sonames: its symlinks libX.so.N -> libX.so.N.M.K
    libs=$(dpkg-deb -c "$deb" 2>/dev/null | sed -n 's|.*/\([^/ ]*\.so\.[0-9]*\) -> .*|\1|p' | sort -u || true)
    missing=""
    for lib in $libs; do have_lib "$lib" || missing="$missing $lib"; done
    if [ -n "$missing" ]; then
        if [ "$(id -u)" != 0 ]; then
            say "warning: this machine lacks$missing (in $(basename "$deb")), and only root can unpack it into /"
            continue
        fi
        say "unpacking $(basename "$deb") for$missing"
        dpkg -x "$deb" /
        WGLLM_GPU_LOADER=carried
    fi
done
[ "$WGLLM_GPU_LOADER" = carried ] && ldconfig
have_lib libvulkan.so.1 || say "warning: still no libvulkan.so.1 (is dpkg there?); wgpu will find no Vulkan adapter"
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ] \
   && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=$nvidia_icd __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    say "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi
export WGPU_BACKEND_TYPE=${WGPU_BACKEND_TYPE:-Vulkan}

# -- 2. carried wheels ----------------------------------------------------------------------------
tag=$("$PY" -S -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[ -d "$CARRY/wheels/$tag" ] || { echo "gpu.sh: no wheels for $tag in $CARRY/wheels (have: $(ls "$CARRY/wheels" | tr '\n' ' ')); run bash bench/gpu_prepare.sh --python ${tag:2:1}.${tag:3}" >&2; exit 2; }
SITE=${WGLLM_GPU_SITE:-/tmp/wgllm-gpu-site}
rm -rf "$SITE"
"$PY" -S - "$SITE" "$CARRY/wheels/any" "$CARRY/wheels/$tag" <<'EOF'
import sys, zipfile
from pathlib import Path

site = Path(sys.argv[1])
for folder in sys.argv[2:]:
    for wheel in sorted(Path(folder).glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:  # a wheel without .data/ installs by unzipping into site-packages
            if any(n.split("/", 1)[0].endswith(".data") for n in z.namelist()):
                sys.exit(f"gpu.sh: {wheel.name} has a .data folder; install it with pip instead")
            z.extractall(site)
        print(f"gpu.sh: unpacked {wheel.name}")
EOF
export PYTHONPATH="$SITE:$PWD/py" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# -- 3. measure -----------------------------------------------------------------------------------
if [ -n "${OUT:-}" ]; then
    out=(--out "$OUT/gpu-bench.json"); logfile=$OUT/gpu-bench.log
else
    out=(--out-dir bench/results); logfile=/tmp/wgllm-gpu-bench.log
fi
left=$((budget - ($(date +%s) - START) - 10))
say "setup took $(($(date +%s) - START)) s; gpu_bench.py gets $left s"
set -o pipefail
# timeout: a last guard for a hung driver (gpu_bench.py keeps to its budget and rewrites its JSON
# after every part, so what was measured before a hang is kept)
timeout --kill-after=5 $((left + 5)) "$PY" -S bench/gpu_bench.py --budget "$left" "${out[@]}" ${extra[@]+"${extra[@]}"} 2>&1 | tee "$logfile"
say "done in $(($(date +%s) - START)) s; log: $logfile"
