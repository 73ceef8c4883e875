# Nezha (Train Ticket) real-data evaluation: replays each day in virtual time
# through the traces pairer, graph and detectors, in both signal modes
# (traces only; traces + pod metrics), and prints spans/s replayed.
NEZHA_DIR ?= $(SHARED_DIR)/datasets/nezha
BENCH_CMDS += "$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals both"

.PHONY: nezha-eval
nezha-eval:
	$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals both
