#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on loopback and prints its DSN.
#   scripts/postgres-start.sh DIR [PORT]
# DIR must not exist or be empty; it is created and owned by the postgres
# user (initdb and postgres refuse to run as root). PORT 0 or absent picks a
# free one. Stop it with scripts/postgres-stop.sh DIR.
set -euo pipefail
DIR=${1:?usage: postgres-start.sh DIR [PORT]}
PORT=${2:-0}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
if [ "$PORT" = 0 ]; then
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000)))
fi
RUN=()
if [ "$(id -u)" -eq 0 ]; then
	RUN=(runuser -u postgres --)
	mkdir -p "$DIR"
	chown postgres: "$DIR"
	chmod 700 "$DIR"
else
	mkdir -p "$DIR"
fi
# The cluster's parent dirs must be traversable by the postgres user.
"${RUN[@]}" "$PGBIN/initdb" -D "$DIR/data" -U meshlens --auth=trust -E UTF8 --no-instructions >"$DIR/initdb.log" 2>&1 ||
	{ cat "$DIR/initdb.log" >&2; exit 1; }
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
	-o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=on -c max_connections=50" start >/dev/null ||
	{ cat "$DIR/server.log" >&2; exit 1; }
"${RUN[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U meshlens meshlens
echo "postgres://meshlens@127.0.0.1:$PORT/meshlens?sslmode=disable"
