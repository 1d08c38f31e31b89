#!/usr/bin/env bash
# Set up this machine (scripts/setup.sh) and run the main job: serve the demo chat page with the
# default model (SmolLM2-135M-Instruct, fetched once) on http://127.0.0.1:8000/. LoRA adapters
# (GGUF) dropped into ./loras appear in the page's picker while it runs.
#   bash scripts/run.sh [serve-models options, e.g. --port 8080 --model other.gguf]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
mkdir -p loras
exec .venv/bin/serve-models --loras-dir loras "$@"
