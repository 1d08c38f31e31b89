#!/usr/bin/env bash
# Set up this machine for wgllm: system packages, the Python venv (.venv) and the package itself.
# Safe to run again: each step is skipped when it is already done.
#   bash scripts/setup.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
say() { echo "setup: $*" >&2; }

# -- system packages -------------------------------------------------------------------------------
# mesa-vulkan-drivers: Vulkan on the CPU (lavapipe) for wgpu where there is no GPU driver;
# chromium: the browser the browser tests drive (Debian's package, never a downloaded build).
missing=()
for pkg in mesa-vulkan-drivers chromium; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "not root: skipping apt-get; install these yourself: ${missing[*]}"
  elif ! command -v apt-get >/dev/null; then
    say "no apt-get on this machine; install these yourself: ${missing[*]}"
  else
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# -- Python venv -----------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# torch first, pinned: this exact CPU build lies on local disk here, any other spec downloads
# a multi-gigabyte CUDA build.
if ! .venv/bin/python -c 'import sys, importlib.metadata as m; sys.exit(not m.version("torch").startswith("2.13.0"))' 2>/dev/null; then
  say "installing torch==2.13.0"
  "${pip[@]}" torch==2.13.0
fi
# the package, editable, with its test tools; redone only when pyproject.toml changes
stamp=.venv/.wgllm-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $repo"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("wgllm") is None)' 2>/dev/null; then
  say "installing wgllm (editable) with its dev extra"
  "${pip[@]}" -e '.[dev]'
  echo "$want" > "$stamp"
fi

# -- web bundle ------------------------------------------------------------------------------------
# web/dist (the bundle the demo page and serve-models use) from web/src and shaders/
if ! command -v npm >/dev/null; then
  say "no npm on this machine: install Node.js >= 20 and npm, then run this again"
  exit 1
fi
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "installing the web bundle's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
say "building web/dist"
(cd web && npm run --silent build)

say "done"
