#!/usr/bin/env bash
# Builds Jaeger's HotROD demo into bin/tools/ (gitignored) from a separate
# tools module, because `go install` refuses its replace directive and its
# dependencies must stay out of meshlens' go.mod. Skips when already built.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MESHLENS_TOOLS_DIR:-$PWD/bin/tools}"
if [ -x "$dir/hotrod" ]; then exit 0; fi
mod="$dir/hotrod-module"
mkdir -p "$mod"
echo "building HotROD v1.76.0 into $dir"
cd "$mod"
[ -f go.mod ] || go mod init tools >/dev/null 2>&1
GOWORK=off go get -tool github.com/jaegertracing/jaeger/examples/hotrod@v1.76.0
GOWORK=off CGO_ENABLED=0 go build -o "$dir/hotrod" github.com/jaegertracing/jaeger/examples/hotrod
