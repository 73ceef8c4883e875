#!/usr/bin/env bash
# Soak test: one meshlens on loopback with every receiver driven at once from
# separate processes (telemetrygen OTLP/gRPC traces, two remote-write load
# generators, a scraped fixture exporter), a demo scenario with faults (a
# detector storm) alerting to a webhook receiver that is down, a websocket
# client on /api/v1/live and an API poller. Reports throughput, p99 API
# latency, peak RSS, refused/retried counts, and checks that every
# acknowledged remote-write request is in the graph.
#   scripts/soak.sh [--duration 10m] [--scenario boutique-payment-errors]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10m
SCENARIO=boutique-payment-errors
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    *) echo "usage: $0 [--duration 10m] [--scenario NAME]" >&2; exit 2 ;;
  esac
done
secs=$(python3 -c "
import re,sys; s='$DURATION'; m=re.fullmatch(r'(\d+)([smh])',s)
print(int(m.group(1))*{'s':1,'m':60,'h':3600}[m.group(2)])")
./scripts/install-telemetrygen.sh
go build -o bin/meshlens ./cmd/meshlens
ML=$PWD/bin/meshlens
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP=$(port); OTLPG=$(port); OTLPH=$(port); SCRAPE=$(port); DEADHOOK=$(port)

"$ML" fixtures serve-metrics --scenario bookinfo --addr 127.0.0.1:$SCRAPE 2>"$work/scrape.log" & pids+=($!)
cat >"$work/config.yaml" <<YAML
http: {addr: "127.0.0.1:$HTTP"}
dataDir: $work/data
demo: {scenario: $SCENARIO, seed: 7}
log: {level: warn}
metrics:
  targets: [{name: bookinfo, url: "http://127.0.0.1:$SCRAPE/stats/prometheus", interval: 5s}]
traces:
  otlpGrpcAddr: "127.0.0.1:$OTLPG"
  otlpHttpAddr: "127.0.0.1:$OTLPH"
  jaegerGrpcAddr: ""
  jaegerHttpAddr: ""
  zipkinAddr: ""
detect:
  alerts:
    webhooks: [{name: down, url: "http://127.0.0.1:$DEADHOOK/hook", format: alertmanager, minSeverity: info}]
YAML
"$ML" serve --config "$work/config.yaml" 2>"$work/serve.log" & SERVE=$!; pids+=($SERVE)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break; sleep 0.2; done

peak=0
( while kill -0 $SERVE 2>/dev/null; do awk '/VmRSS/{print $2}' /proc/$SERVE/status; sleep 2; done ) >"$work/rss" 2>/dev/null & pids+=($!)

load=()
"$ML" loadgen remote-write --url "http://127.0.0.1:$HTTP/api/v1/write" --rate 20 --edges 100 --namespace soak-a --duration "$DURATION" >"$work/rw-a.json" & load+=($!)
"$ML" loadgen remote-write --url "http://127.0.0.1:$HTTP/api/v1/write" --rate 20 --edges 100 --namespace soak-b --duration "$DURATION" >"$work/rw-b.json" & load+=($!)
bin/tools/telemetrygen traces --otlp-insecure --otlp-endpoint "127.0.0.1:$OTLPG" --rate 500 --workers 2 --child-spans 3 --duration "$DURATION" >"$work/tg.log" 2>&1 & load+=($!)
"$ML" loadgen watch --url "ws://127.0.0.1:$HTTP/api/v1/live?view=workload" --duration "$DURATION" >"$work/ws.json" & load+=($!)
"$ML" loadgen api --url "http://127.0.0.1:$HTTP/api/v1/graph?view=workload&window=5m" --rate 5 --duration "$DURATION" >"$work/api.json" & load+=($!)
pids+=("${load[@]}")
wait "${load[@]}"
sleep 25 # let the last buckets close

metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" 'index($0,m)==1{s+=$NF} END{printf "%d", s}'; }
graphreq() { curl -s "http://127.0.0.1:$HTTP/api/v1/graph?view=workload&window=1h&namespace=$1" |
  python3 -c 'import json,sys; g=json.load(sys.stdin); print(sum(e["data"]["stats"]["requests"] for e in g["elements"]["edges"]))'; }
peak=$(sort -n "$work/rss" | tail -1)
spans=$(metric meshlens_spans_received_total)
tgsent=$(grep 'traces generated' "$work/tg.log" | grep -oE '"traces": [0-9]+' | awk '{s+=$2} END{print s+0}')
tgverdict=OK; [ "$spans" = "$((tgsent*4))" ] || tgverdict=MISMATCH
echo
echo "| measure | value |"
echo "|---|---|"
echo "| duration | $DURATION ($secs s), demo scenario $SCENARIO, webhook receiver down (127.0.0.1:$DEADHOOK) |"
for ns in a b; do
  read -r sent acked retried failed want < <(python3 -c "import json;d=json.load(open('$work/rw-$ns.json'));print(d['requestsSent'],d['acked'],d['retried'],d['failed'],int(d['expectedGraphRequests']))")
  got=$(graphreq soak-$ns)
  verdict=OK; [ "$got" = "$want" ] || verdict=MISMATCH
  echo "| remote-write soak-$ns | $sent writes x100 series ($((sent*100/secs)) samples/s), $acked acked, $retried retried, $failed failed; requests acknowledged $want, in graph $got: $verdict |"
done
echo "| OTLP/gRPC spans | telemetrygen sent $tgsent traces x4 spans = $((tgsent*4)); received $spans ($((spans/secs)) spans/s): $tgverdict |"
echo "| scrape bookinfo | $(metric 'meshlens_metrics_scrapes_total{result="ok"' ) ok, $(metric 'meshlens_metrics_scrapes_total{result="error"') errors |"
echo "| throttled (429/503) | $(metric meshlens_receiver_throttled_total) ; trace requests rejected $(metric meshlens_trace_requests_rejected_total) |"
echo "| pairing evicted / dropped | $(metric meshlens_spans_evicted_total) / $(metric meshlens_spans_dropped_total) |"
echo "| API GET /api/v1/graph | $(cat "$work/api.json") |"
echo "| websocket /api/v1/live | $(cat "$work/ws.json") |"
echo "| anomalies (detector storm) | $(curl -s "http://127.0.0.1:$HTTP/api/v1/anomalies" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d,list) else d.get("anomalies",[])))' 2>/dev/null || echo ?) |"
echo "| alert deliveries failed (webhook down) | $(curl -s "http://127.0.0.1:$HTTP/metrics" | grep -E '^meshlens_alert' | grep -iE 'fail|error|drop|retr' | tr '\n' ' ') |"
echo "| peak RSS | $((peak/1024)) MiB |"
echo "| process alive at end | $(kill -0 $SERVE 2>/dev/null && echo yes || echo NO) |"
echo "logs: $work"
