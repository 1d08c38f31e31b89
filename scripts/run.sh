#!/usr/bin/env bash
# Set up this machine (scripts/setup.sh) and run the main job: generate an answer with the default
# model (SmolLM2-135M-Instruct, fetched once) on the numpy reference backend.
#   bash scripts/run.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
exec .venv/bin/wgllm generate --prompt "The capital of France is" --top-k 1 --max-tokens 64
