#!/usr/bin/env bash
# Installs OpenTelemetry's telemetrygen (OTLP load generator) into bin/tools/
# (gitignored) unless it is already there. Used by the traces integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MESHLENS_TOOLS_DIR:-$PWD/bin/tools}"
if [ -x "$dir/telemetrygen" ]; then exit 0; fi
mkdir -p "$dir"
echo "installing telemetrygen v0.161.0 into $dir"
GOBIN="$dir" GOFLAGS=-mod=mod go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0
