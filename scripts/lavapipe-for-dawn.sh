#!/usr/bin/env bash
# A lavapipe that Dawn accepts, for the browser engine's shader-f16 test (tests/browser/kv_f16_dawn.spec.ts).
#   scripts/lavapipe-for-dawn.sh DIR      then: VK_ICD_FILENAMES=DIR/lvp_icd.json
# Dawn (the WebGPU of Chromium and of the `webgpu` npm package) refuses Debian 12's lavapipe (Mesa
# 22.3): "Vulkan shaderUniform*ArrayDynamicIndexing required". bookworm-backports' Mesa 25.0 passes
# and has shader-f16. This fetches that one package with apt's own client and unpacks its lavapipe
# into DIR: nothing is installed, the system's Mesa (wgpu-py's lavapipe) stays as it is.
# (Chromium itself still will not use it: it takes a non-SwiftShader adapter only when it can import
# external images, which needs VK_KHR_external_semaphore_fd and VK_EXT_image_drm_format_modifier,
# and lavapipe has neither; see the spec's header.) Kept when already there.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
# Any Mesa from 23 on passes Dawn's checks (25.0.7-2~bpo12+1 was the one tested); backports keeps
# only its newest build, so the current one is fetched rather than a pinned version.
min_major=23
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
lib="$dir/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
if [ -f "$dir/lvp_icd.json" ] && [ -f "$dir/version" ] && [ -f "$lib" ]; then exit 0; fi
command -v apt-get >/dev/null || { echo "$0: needs apt-get (Debian) to fetch mesa-vulkan-drivers from bookworm-backports" >&2; exit 1; }
rm -rf "$dir/apt" "$dir/root" "$dir/lvp_icd.json" "$dir/version"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial"
echo "deb http://deb.debian.org/debian bookworm-backports main" > "$dir/apt/sources.list"
apt=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o "Dir::Etc::SourceParts=$dir/apt/none"
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o "APT::Sandbox::User=$(id -un)" -q)
apt-get "${apt[@]}" update >&2
(cd "$dir/apt" && apt-get "${apt[@]}" download "mesa-vulkan-drivers/bookworm-backports" >&2)
deb=("$dir"/apt/mesa-vulkan-drivers_*.deb)
version="$(dpkg-deb -f "${deb[0]}" Version)"
major="${version%%.*}"; major="${major#*:}"
if [ "$major" -lt "$min_major" ]; then
  echo "$0: bookworm-backports has mesa-vulkan-drivers $version; Dawn needs Mesa $min_major or newer" >&2
  exit 1
fi
dpkg-deb -x "${deb[0]}" "$dir/root"
[ -f "$lib" ] || { echo "$0: $lib is not in mesa-vulkan-drivers $version" >&2; exit 1; }
rm -rf "$dir/apt"
icd=("$dir"/root/usr/share/vulkan/icd.d/lvp_icd*.json)
[ -f "${icd[0]}" ] || { echo "$0: mesa-vulkan-drivers $version has no lvp_icd*.json" >&2; exit 1; }
# the package's own ICD manifest (its Vulkan version), pointed at the unpacked library
sed -E 's#"library_path": *"[^"]*"#"library_path": "'"$lib"'"#' "${icd[0]}" > "$dir/lvp_icd.json"
echo "$version" > "$dir/version"
