#!/usr/bin/env bash
# Stops a cluster started by scripts/postgres-start.sh and removes DIR.
set -euo pipefail
DIR=${1:?usage: postgres-stop.sh DIR}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RUN=()
if [ "$(id -u)" -eq 0 ]; then RUN=(runuser -u postgres --); fi
if [ -f "$DIR/data/postmaster.pid" ]; then
	"${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
fi
rm -rf "$DIR"
