# storage: PostgreSQL 15 (Debian) for the contract suite's PostgreSQL half;
# the tests start a throwaway cluster on loopback (scripts/postgres-start.sh)
# unless MESHLENS_POSTGRES_DSN names a server. The durability test builds the
# binary itself (or uses MESHLENS_BIN).
TEST_DEPS += storage-test-deps
# Edge-history write rate (10,000 edges), bytes per edge per day per tier,
# replay time of a past 5m graph of 1,000 workloads (goal <= 200 ms).
BENCH_CMDS += "$(GO) run ./cmd/meshlens bench-storage"

.PHONY: storage-test-deps
storage-test-deps:
	@bash scripts/install-postgres.sh
