#!/usr/bin/env bash
# Soak test: one meshlens on loopback with every receiver driven at once from
# separate processes (telemetrygen OTLP/gRPC traces, two remote-write load
# generators, optionally a pre-encoded OTLP generator, a scraped fixture
# exporter), a demo scenario with faults (a detector storm) alerting to a
# webhook receiver that is down, a websocket client on /api/v1/live, an API
# poller and a chat client. Reports throughput, p99 API and chat latency, peak
# RSS, CPU, refused/retried counts, and checks that every acknowledged
# remote-write request and traced call is in the graph.
#
#   scripts/soak.sh [--duration 10m] [--profile default|bench] [--scenario NAME]
#                   [--rw-rate SAMPLES/S] [--rw-shape simple|istio] [--rw-edges N] [--rw-workers N]
#                   [--otlp-workers N]
#                   [--span-rate SPANS/S] [--tg-rate TRACES/S] [--chat-rate Q/S]
#                   [--api-rate REQ/S]
#
# Profiles: "default" is the low-rate soak (2 x 2,000 samples/s, ~1,000
# spans/s from telemetrygen). "bench" drives the receivers at the rates this
# 2-core machine sustains with the generators on it (see docs/hardening.md);
# the options after --profile override single rates. Rates of the two
# remote-write generators are per generator.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10m
SCENARIO=boutique-payment-errors
PROFILE=${SOAK_PROFILE:-default}
args=("$@")
# The profile first, so explicit rates override it wherever they appear.
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[i]}" = --profile ] && PROFILE=${args[i+1]:-}
done
case "$PROFILE" in
  default)
    RW_RATE=2000; RW_SHAPE=simple; RW_EDGES=100; RW_PER_REQ=0; RW_WORKERS=1
    SPAN_RATE=0; OTLP_WORKERS=1; TG_RATE=500; TG_WORKERS=2; TG_BATCH=100
    API_RATE=5; CHAT_RATE=0.2 ;;
  bench)
    # Istio-shaped series (100 per edge) in requests of 20 edges (2,000
    # samples, Prometheus' default max_samples_per_send).
    RW_RATE=250000; RW_SHAPE=istio; RW_EDGES=500; RW_PER_REQ=20; RW_WORKERS=4
    SPAN_RATE=100000; OTLP_WORKERS=2; TG_RATE=500; TG_WORKERS=2; TG_BATCH=512
    API_RATE=5; CHAT_RATE=0.5 ;;
  *) echo "unknown profile $PROFILE (default, bench)" >&2; exit 2 ;;
esac
usage() { sed -n '11,15p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --duration) DURATION=$2 ;;
    --scenario) SCENARIO=$2 ;;
    --profile) ;;
    --rw-rate) RW_RATE=$2 ;;
    --rw-shape) RW_SHAPE=$2 ;;
    --rw-edges) RW_EDGES=$2 ;;
    --rw-workers) RW_WORKERS=$2 ;;
    --otlp-workers) OTLP_WORKERS=$2 ;;
    --span-rate) SPAN_RATE=$2 ;;
    --tg-rate) TG_RATE=$2 ;;
    --chat-rate) CHAT_RATE=$2 ;;
    --api-rate) API_RATE=$2 ;;
    *) usage ;;
  esac
  shift 2
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

cputicks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
tck=$(getconf CLK_TCK)
srvcpu0=$(cputicks $SERVE)
# RSS of the server, 1-minute load average, CPU of telemetrygen (it prints none).
( while kill -0 $SERVE 2>/dev/null; do
    echo "cpu $(head -1 /proc/stat)"
    echo "rss $(awk '/VmRSS/{print $2}' /proc/$SERVE/status) load $(cut -d' ' -f1 /proc/loadavg) tg $(cputicks "$(cat "$work/tg.pid" 2>/dev/null || echo 0)")"
    sleep 2
  done ) >"$work/monitor" 2>/dev/null & pids+=($!)

# Remote-write: request rate from the sample rate and the series per request.
case "$RW_SHAPE" in simple) per_edge=1 ;; istio) per_edge=100 ;; *) echo "bad --rw-shape $RW_SHAPE" >&2; exit 2 ;; esac
per_req=$(( RW_PER_REQ > 0 ? RW_PER_REQ : RW_EDGES ))
rw_req_rate=$(python3 -c "print($RW_RATE/($per_req*$per_edge))")

load=()
for ns in a b; do
  "$ML" loadgen remote-write --url "http://127.0.0.1:$HTTP/api/v1/write" --rate "$rw_req_rate" --shape "$RW_SHAPE" \
    --edges "$RW_EDGES" --edges-per-request "$RW_PER_REQ" --workers "$RW_WORKERS" --namespace soak-$ns --duration "$DURATION" >"$work/rw-$ns.json" & load+=($!)
done
bin/tools/telemetrygen traces --otlp-insecure --otlp-endpoint "127.0.0.1:$OTLPG" --rate "$TG_RATE" --workers "$TG_WORKERS" \
  --batch-size "$TG_BATCH" --child-spans 3 --duration "$DURATION" >"$work/tg.log" 2>&1 & load+=($!); echo $! >"$work/tg.pid"
if [ "$SPAN_RATE" != 0 ]; then
  "$ML" loadgen otlp --addr "127.0.0.1:$OTLPG" --rate "$SPAN_RATE" --workers "$OTLP_WORKERS" --namespace soak-otlp \
    --duration "$DURATION" >"$work/otlp.json" & load+=($!)
fi
"$ML" loadgen watch --url "ws://127.0.0.1:$HTTP/api/v1/live?view=workload" --duration "$DURATION" >"$work/ws.json" & load+=($!)
"$ML" loadgen api --url "http://127.0.0.1:$HTTP/api/v1/graph?view=workload&window=5m" --rate "$API_RATE" --duration "$DURATION" >"$work/api.json" & load+=($!)
"$ML" loadgen chat --url "http://127.0.0.1:$HTTP/api/v1/chat" --rate "$CHAT_RATE" --duration "$DURATION" >"$work/chat.json" & load+=($!)
pids+=("${load[@]}")
wait "${load[@]}"
srvcpu1=$(cputicks $SERVE)
sleep 25 # let the last buckets close and waiting spans expire

metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" 'index($0,m)==1{s+=$NF} END{printf "%d", s}'; }
graphreq() { curl -s "http://127.0.0.1:$HTTP/api/v1/graph?view=workload&window=1h&namespace=$1" |
  python3 -c 'import json,sys; g=json.load(sys.stdin); print(sum(e["data"]["stats"]["requests"] for e in g["elements"]["edges"]))'; }
js() { python3 -c "import json,sys; d=json.load(open('$1')); print(*[d.get(k, '') for k in sys.argv[1:]])" "${@:2}"; }
peak=$(awk '$1=="rss"{print $2}' "$work/monitor" | sort -n | tail -1)
loadmax=$(awk '$1=="rss"{print $4}' "$work/monitor" | sort -g | tail -1)
loadavg=$(awk '$1=="rss"{s+=$4; n++} END{printf "%.1f", s/n}' "$work/monitor")
tgcpu=$(awk '$1=="rss"{print $6}' "$work/monitor" | sort -n | tail -1)
# Machine CPU busy (all processes, other engineers' included) over the load phase.
busy=$(awk -v n="$(( secs / 2 ))" '$1=="cpu" && ++k<=n+1 {idle=$6+$7; tot=0; for(i=3;i<=NF;i++) tot+=$i; if(k==1){i0=idle;t0=tot} i1=idle; t1=tot}
  END{if (t1>t0) printf "%.0f%%", 100*(1-(i1-i0)/(t1-t0)); else print "?"}' "$work/monitor")
spans=$(metric meshlens_spans_received_total)
tgsent=$(grep 'traces generated' "$work/tg.log" | grep -oE '"traces": [0-9]+' | awk '{s+=$2} END{print s+0}')
otlpspans=0; [ -f "$work/otlp.json" ] && otlpspans=$(js "$work/otlp.json" spansAcked)
tgverdict=OK; [ "$spans" = "$((tgsent*4 + otlpspans))" ] || tgverdict=MISMATCH
gencpu=0
echo
echo "| measure | value |"
echo "|---|---|"
echo "| duration, profile | $DURATION ($secs s), profile $PROFILE, demo scenario $SCENARIO, webhook receiver down (127.0.0.1:$DEADHOOK) |"
for ns in a b; do
  read -r shape series per sent acked retried failed sps p99 cpu want < <(js "$work/rw-$ns.json" shape series seriesPerRequest requestsSent acked retried failed samplesPerSec p99ms cpuSeconds expectedGraphRequests)
  gencpu=$(python3 -c "print($gencpu+$cpu)")
  got=$(graphreq soak-$ns)
  verdict=OK; [ "$got" = "$want" ] || verdict=MISMATCH
  echo "| remote-write soak-$ns | $shape, $series series, $sent writes x $per series; $acked acked, $retried retried, $failed failed; $sps samples/s acked; write p99 $p99 ms; loadgen CPU $cpu s; requests acknowledged $want, in graph $got: $verdict |"
done
echo "| remote-write total (server) | $(metric meshlens_metrics_remote_write_samples_total) samples in $(metric meshlens_metrics_remote_write_requests_total) requests ($(( $(metric meshlens_metrics_remote_write_samples_total) / secs )) samples/s); series dropped: $(metric meshlens_metrics_series_dropped_total) |"
if [ -f "$work/otlp.json" ]; then
  read -r sent acked retried failed rej sps p99 cpu want < <(js "$work/otlp.json" requestsSent acked retried failed spansRejected spansPerSec p99ms cpuSeconds expectedGraphRequests)
  gencpu=$(python3 -c "print($gencpu+$cpu)")
  got=$(graphreq soak-otlp)
  verdict=OK; [ "$got" = "$want" ] || verdict=MISMATCH
  echo "| OTLP/gRPC loadgen soak-otlp | $sent exports; $acked acked, $retried retried, $failed failed, $rej spans rejected; $otlpspans spans acked ($sps spans/s); export p99 $p99 ms; loadgen CPU $cpu s; calls acknowledged $want, in graph $got: $verdict |"
fi
echo "| OTLP/gRPC telemetrygen | sent $tgsent traces x4 spans = $((tgsent*4)) ($((tgsent*4/secs)) spans/s); CPU $(python3 -c "print(round($tgcpu/$tck,1))") s |"
echo "| spans received (server) | $spans ($((spans/secs)) spans/s) = telemetrygen + loadgen acked: $tgverdict |"
echo "| scrape bookinfo | $(metric 'meshlens_metrics_scrapes_total{result="ok"' ) ok, $(metric 'meshlens_metrics_scrapes_total{result="error"') errors |"
echo "| throttled (429/503) | $(metric meshlens_receiver_throttled_total) ; trace requests rejected $(metric meshlens_trace_requests_rejected_total) |"
echo "| pairing evicted / dropped | $(metric meshlens_spans_evicted_total) / $(metric meshlens_spans_dropped_total) |"
echo "| graph observations late / too old | $(metric meshlens_graph_observations_late_total) / $(metric meshlens_graph_observations_too_old_total) |"
echo "| API GET /api/v1/graph | $(cat "$work/api.json") |"
echo "| chat POST /api/v1/chat | $(cat "$work/chat.json") |"
echo "| websocket /api/v1/live | $(cat "$work/ws.json") |"
echo "| anomalies (detector storm) | $(curl -s "http://127.0.0.1:$HTTP/api/v1/anomalies" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d,list) else d.get("anomalies",[])))' 2>/dev/null || echo ?) |"
echo "| alert deliveries failed (webhook down) | $(curl -s "http://127.0.0.1:$HTTP/metrics" | grep -E '^meshlens_alert' | grep -iE 'fail|error|drop|retr' | tr '\n' ' ') |"
echo "| server CPU | $(python3 -c "c=($srvcpu1-$srvcpu0)/$tck; print(f'{c:.0f} s = {c/$secs:.2f} cores')") while loaded; generators (loadgen remote-write + otlp) $(printf %.1f "$gencpu") s |"
echo "| machine | $(nproc) cores, $busy busy during the load (all processes); load average (1 min) mean $loadavg, max $loadmax |"
echo "| peak RSS | $((peak/1024)) MiB |"
echo "| process alive at end | $(kill -0 $SERVE 2>/dev/null && echo yes || echo NO) |"
echo "logs: $work"
