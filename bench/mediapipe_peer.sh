#!/usr/bin/env bash
# The MediaPipe peer benchmark (issue 14), made and run in one command:
#   bash bench/mediapipe_peer.sh [bench/mediapipe_peer.mjs args: --rounds 2 --gen-tokens 12 --json OUT]
# Not part of CI: it writes about 8 GB to its cache and runs for 20-40 minutes on 2 cores.
#
# Everything big lives in $WGLLM_BENCH_CACHE (default ${WGLLM_CACHE:-~/.cache/wgllm}/mediapipe-peer),
# outside the repository, and is made once (each step is skipped when its output is there):
#   gemma-2b-random/     random-weight Gemma-2B (bf16 safetensors, 5.0 GB) and its 256,000-piece
#                        tokenizer (bench/mediapipe_peer_model.py, the repo's .venv)
#   mp-venv/             Python 3.11 with torch==2.13.0 and mediapipe==0.10.21 (MediaPipe's converter)
#   *.bin                MediaPipe's conversion: backend gpu, int4 attention/FFN, int8 embedding
#   *.gguf               wgllm's conversion of the same checkpoint: Q4_0 attention/FFN, Q8_0 embedding
#   npm/node_modules/@mediapipe/tasks-genai   0.10.29, the page's other bundle and its wasm
# Needs the repo's .venv and web/node_modules (scripts/setup.sh), python3.11, node, /usr/bin/chromium.
# wgllm's side is the committed HEAD: its bundle is built from `git archive HEAD` in the cache.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WGLLM_BENCH_CACHE:-${WGLLM_CACHE:-$HOME/.cache/wgllm}/mediapipe-peer}"
mkdir -p "$cache"
cd "$repo"
[ -x .venv/bin/python ] && [ -d web/node_modules ] || { echo "run scripts/setup.sh first (the repo's .venv and web/node_modules)" >&2; exit 2; }

ckpt="$cache/gemma-2b-random"
.venv/bin/python bench/mediapipe_peer_model.py "$ckpt"

if [ ! -f "$cache/mp-venv/.installed" ]; then
  "${MP_PYTHON:-python3.11}" -m venv "$cache/mp-venv"
  "$cache/mp-venv/bin/pip" install -q torch==2.13.0          # first: the local wheel, so mediapipe's deps don't pull another
  "$cache/mp-venv/bin/pip" install -q mediapipe==0.10.21
  touch "$cache/mp-venv/.installed"
fi
bin="$cache/gemma-2b-random-mediapipe-gpu-int4-int8.bin"
[ -f "$bin" ] || "$cache/mp-venv/bin/python" bench/mediapipe_peer_convert_mp.py "$ckpt" "$bin"
gguf="$cache/gemma-2b-random-q4_0-q8_0.gguf"
[ -f "$gguf" ] || .venv/bin/wgllm convert --input-ckpt "$ckpt" --model-type GEMMA_2B \
  --vocab-model-file "$ckpt/tokenizer.model" --output "$gguf" \
  --attention-quant-bits 4 --feedforward-quant-bits 4 --embedding-quant-bits 8

if [ ! -f "$cache/npm/node_modules/@mediapipe/tasks-genai/package.json" ]; then
  mkdir -p "$cache/npm"
  [ -f "$cache/npm/package.json" ] || echo '{"private": true}' > "$cache/npm/package.json"
  npm install --prefix "$cache/npm" --no-audit --no-fund @mediapipe/tasks-genai@0.10.29
fi
# wgllm's bundle from the committed HEAD (not the work tree), built in the cache
commit="$(git rev-parse HEAD)"
src="$cache/wgllm-src"
if [ "$(cat "$src/.commit" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$src" && mkdir -p "$src"
  git archive HEAD web shaders | tar -x -C "$src"
  ln -s "$repo/web/node_modules" "$src/web/node_modules"
  (cd "$src/web" && node build.mjs)
  echo "$commit" > "$src/.commit"
fi

exec node bench/mediapipe_peer.mjs --cache "$cache" --bundle "$src/web/dist" --bundle-commit "$commit" "$@"
