#!/usr/bin/env bash
# Browser benchmark of the dashboard at 1,000 nodes / 5,000 edges (make bench).
set -euo pipefail
cd "$(dirname "$0")"
../../scripts/install-chromium.sh
[ -f dist/index.html ] || npm run --silent build
exec node e2e/bench.js "$@"
