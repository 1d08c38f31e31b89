#!/usr/bin/env bash
# Fuzz both GGUF readers (Python's GGUFFile and the bundle's streaming readGGUF, in Node) with N
# mutated and random inputs each (default 100000), seeded from the real SmolLM2 / Gemma-3 headers
# and tiny converted models; prints outcome counts per reader and peak memory. Not part of CI
# (tests/py/test_fuzz.py runs a short version). Figures of a full run: docs/fuzzing.md.
#   bash scripts/fuzz.sh [N] [extra options of scripts/fuzz_gguf.py run, e.g. --json out.json]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
shift || true
PY=.venv/bin/python
SEEDS=build/fuzz-seeds
if ! ls "$SEEDS"/tiny-*.gguf >/dev/null 2>&1; then
  "$PY" scripts/fuzz_gguf.py seeds "$SEEDS"
fi
exec "$PY" scripts/fuzz_gguf.py run --seeds "$SEEDS" -n "$N" "$@"
