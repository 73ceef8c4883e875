#!/usr/bin/env bash
# Installs a real Prometheus (Debian's package, 2.42) for the metrics
# integration test. Idempotent: does nothing when prometheus is on PATH.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service where an init system runs; the tests
# start their own instance on loopback, so stop it when it is running.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
	$SUDO systemctl stop prometheus || true
fi
command -v prometheus >/dev/null
prometheus --version 2>&1 | head -1
