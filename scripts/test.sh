#!/usr/bin/env bash
# Set up this machine (scripts/setup.sh), run the browser tests (scripts/web-test.sh: build the bundle,
# Playwright on Debian's Chromium) and every Python test; exits non-zero on any failure.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
bash scripts/web-test.sh
exec .venv/bin/python -m pytest tests/py "$@"
