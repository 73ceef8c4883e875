# Load and soak test (minutes; not part of `make test`): SOAK_DURATION=2m make soak
SOAK_DURATION ?= 10m
.PHONY: soak
soak:
	./scripts/soak.sh --duration $(SOAK_DURATION)
