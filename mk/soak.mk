# Load and soak test (minutes; not part of `make test`):
#   SOAK_DURATION=2m make soak                      low-rate default profile
#   SOAK_PROFILE=bench make soak                    benchmark-rate profile (10 minutes)
#   SOAK_PROFILE=bench SOAK_ARGS="--rw-rate 200000" make soak
SOAK_DURATION ?= 10m
SOAK_PROFILE ?= default
SOAK_ARGS ?=
.PHONY: soak
soak:
	./scripts/soak.sh --duration $(SOAK_DURATION) --profile $(SOAK_PROFILE) $(SOAK_ARGS)
