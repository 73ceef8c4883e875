# Nezha (Train Ticket) real-data evaluation: replays each day in virtual time
# through the traces pairer, graph and detectors, in both signal modes
# (traces only; traces + pod metrics), and prints spans/s replayed.
# nezha-synthetic moves the labelled faults onto seeded pods as network delays
# and CPU contention re-timed into the real spans (traces only, seeds 1-5).
NEZHA_DIR ?= $(SHARED_DIR)/datasets/nezha
NEZHA_SYNTHETIC ?= network_delay:200ms,network_delay:50ms,cpu_contention:4,cpu_contention:2
BENCH_CMDS += "$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals both"
BENCH_CMDS += "$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals traces --synthetic $(NEZHA_SYNTHETIC) --seeds 5"

.PHONY: nezha-eval nezha-synthetic
nezha-eval:
	$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals both

nezha-synthetic:
	$(GO) run ./cmd/meshlens eval nezha --dir $(NEZHA_DIR) --signals traces --synthetic $(NEZHA_SYNTHETIC) --seeds 5
