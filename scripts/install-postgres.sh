#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server for the storage integration tests.
# Idempotent: does nothing when initdb is already there. The package's own
# cluster is not used; tests start a throwaway one (scripts/postgres-start.sh).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/postgres" ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
# Where an init system runs, the package starts its default cluster; the
# tests never use it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then
	$SUDO systemctl stop postgresql || true
fi
"$PGBIN/postgres" --version
