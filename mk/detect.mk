# detect: one detection pass over 10,000 edges (goal <= 50 ms on one core) with
# baseline memory per edge. `make detect-eval` prints the scenario and PetShop figures.
BENCH_CMDS += "env GOMAXPROCS=1 $(GO) run ./cmd/meshlens eval bench --edges 10000"

.PHONY: detect-eval
bench: detect-eval
detect-eval:
	$(GO) run ./cmd/meshlens eval detect --scenario all
	$(GO) run ./cmd/meshlens eval rca --petshop $(SHARED_DIR)/datasets/petshop
