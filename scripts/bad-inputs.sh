#!/usr/bin/env bash
# Throws bad and hostile inputs at a meshlens with auth and tight limits on
# loopback and prints each response (the table in docs/hardening.md).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/meshlens ./cmd/meshlens
w=$(mktemp -d)
TOK=$(bin/meshlens auth token --name soak --role operator 2>"$w/hash")
H=$(grep -o 'sha256:[0-9a-f]\{64\}' "$w/hash" | head -1)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HP=$(port); OG=$(port); OH=$(port); JH=$(port); ZP=$(port)
cat >"$w/c.yaml" <<EOF
http: {addr: "127.0.0.1:$HP"}
dataDir: $w/data
log: {level: warn}
traces: {otlpGrpcAddr: "127.0.0.1:$OG", otlpHttpAddr: "127.0.0.1:$OH", jaegerGrpcAddr: "", jaegerHttpAddr: "127.0.0.1:$JH", zipkinAddr: "127.0.0.1:$ZP", maxRequestBytes: 1048576}
metrics: {maxBodyBytes: 1048576}
auth: {tokens: [{name: soak, role: operator, sha256: "$H"}]}
receivers: {limits: {requestsPerSecond: 50, burst: 100, maxClients: 1000, maxConcurrent: 8}}
EOF
bin/meshlens serve --config "$w/c.yaml" 2>"$w/serve.log" & SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HP/healthz" >/dev/null && break; sleep 0.2; done
B=http://127.0.0.1:$HP; O=http://127.0.0.1:$OH
r() { printf "| %s | %s |\n" "$1" "$(curl -s -o "$w/body" -w '%{http_code} Retry-After=%header{retry-after}' "${@:2}") $(head -c 90 "$w/body" | tr -d '\n|')"; }
python3 -c "import gzip; open('$w/bomb.gz','wb').write(gzip.compress(b'\0'*(200<<20), 9))"
head -c 2000000 /dev/urandom >"$w/big"
printf '\xff\xff\xff\xff\x0f' >"$w/snappyhuge"
echo "| input | response |"
echo "|---|---|"
r "OTLP/HTTP traces gzip bomb (200 KiB -> 200 MiB)" -X POST -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: gzip' --data-binary @"$w/bomb.gz" $O/v1/traces
r "OTLP/HTTP metrics gzip bomb" -X POST -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: gzip' --data-binary @"$w/bomb.gz" $O/v1/metrics
r "OTLP/HTTP 2 MB body (limit 1 MiB)" -X POST -H 'Content-Type: application/x-protobuf' --data-binary @"$w/big" $O/v1/traces
r "OTLP/HTTP garbage protobuf" -X POST -H 'Content-Type: application/x-protobuf' --data-binary 'garbage' $O/v1/traces
r "OTLP/HTTP Content-Type text/plain" -X POST -H 'Content-Type: text/plain' --data-binary 'x' $O/v1/traces
r "Zipkin truncated JSON" -X POST -H 'Content-Type: application/json' --data-binary '[{"traceId":' http://127.0.0.1:$ZP/api/v2/spans
r "Jaeger Thrift random bytes" -X POST -H 'Content-Type: application/x-thrift' --data-binary @"$w/big" http://127.0.0.1:$JH/api/traces
r "remote-write snappy header claiming 4 GiB" -X POST -H "Authorization: Bearer $TOK" -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' --data-binary @"$w/snappyhuge" $B/api/v1/write
r "remote-write 2 MB body (limit 1 MiB)" -X POST -H "Authorization: Bearer $TOK" -H 'Content-Type: application/x-protobuf' -H 'Content-Encoding: snappy' --data-binary @"$w/big" $B/api/v1/write
r "remote-write without a token" -X POST -H 'Content-Type: application/x-protobuf' --data-binary x $B/api/v1/write
r "GET /api/v1/graph, wrong token" -H 'Authorization: Bearer mlk_wrong' "$B/api/v1/graph"
r "GET /api/v1/graph, operator token" -H "Authorization: Bearer $TOK" "$B/api/v1/graph"
r "POST approve as operator" -X POST -H "Authorization: Bearer $TOK" "$B/api/v1/proposals/p1/approve"
r "POST chat from a foreign Origin" -X POST -H "Authorization: Bearer $TOK" -H 'Origin: https://evil.example' "$B/api/v1/chat/s/messages"
r "websocket upgrade from a foreign Origin" -H "Authorization: Bearer $TOK" -H 'Origin: https://evil.example' -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$B/api/v1/live"
codes=$(for _ in $(seq 300); do curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' --data '{}' $O/v1/traces; done | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
echo "| 300 OTLP/HTTP requests back to back (limit 50/s, burst 100) | $codes|"
echo
curl -s -H "Authorization: Bearer $TOK" $B/metrics | grep -E '^meshlens_(receiver_throttled|trace_requests_rejected|metrics_rejected|auth_failures)' || true
echo "token in /metrics: $(curl -s -H "Authorization: Bearer $TOK" $B/metrics | grep -c "$TOK" || true); token in log: $(grep -c "$TOK" "$w/serve.log" || true)"
awk '/VmHWM/{printf "peak RSS: %d MiB\n", $2/1024}' /proc/$SP/status
