# Traces collector: real OTLP clients for the integration tests, and the
# span-pairing throughput benchmark.
.PHONY: traces-tools
traces-tools:
	./scripts/install-telemetrygen.sh
	./scripts/install-hotrod.sh

TEST_DEPS += traces-tools
BENCH_CMDS += "$(GO) run ./cmd/meshlens bench-traces"
