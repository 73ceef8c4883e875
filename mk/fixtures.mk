# fixtures: the simulator's speed figures run before the other bench commands
# (a target prerequisite, since BENCH_CMDS entries are split on spaces).
.PHONY: bench-fixtures
bench: bench-fixtures
bench-fixtures:
	$(GO) run ./cmd/meshlens fixtures bench
