#!/usr/bin/env bash
# Build the browser bundle and run the Playwright tests (tests/browser) on Debian's Chromium.
#   scripts/web-test.sh [playwright test args...]     e.g. scripts/web-test.sh tests/browser/gguf.spec.ts
# Needs node >= 20, /usr/bin/chromium (apt-get install -y chromium; never `playwright install`)
# and the Python venv (.venv) that writes the GGUF fixtures. Exits non-zero when a test fails.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/web"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
cd "$repo"
# @playwright/test lives in web/node_modules; the config and specs at the repo root find it here
export NODE_PATH="$repo/web/node_modules${NODE_PATH:+:$NODE_PATH}"
exec "$repo/web/node_modules/.bin/playwright" test --config "$repo/playwright.config.ts" "$@"
