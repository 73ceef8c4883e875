# collector/metrics: a real Prometheus for the remote-write integration test,
# and the ingest benchmark (remote-write vs decode-only, scrape vs expfmt parse).
TEST_DEPS += metrics-test-deps
# Quoted: the bench loop runs each entry as one command line.
BENCH_CMDS += "$(GO) run ./cmd/meshlens bench-metrics"

.PHONY: metrics-test-deps
metrics-test-deps:
	@bash scripts/install-prometheus.sh
