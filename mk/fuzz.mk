# Short native-fuzz run of every decoder and parser before `make test`
# (seed corpora in each package's testdata/fuzz/). FUZZTIME=1m make fuzz for longer.
FUZZTIME ?= 3s
FUZZ_TARGETS := \
	FuzzOTLPProto:./collector/traces/ \
	FuzzOTLPJSON:./collector/traces/ \
	FuzzZipkinJSON:./collector/traces/ \
	FuzzJaegerThrift:./collector/traces/ \
	FuzzJaegerProto:./collector/traces/ \
	FuzzRemoteWrite:./collector/metrics/ \
	FuzzExposition:./collector/metrics/ \
	FuzzDecode:./config/ \
	FuzzParse:./fixtures/ \
	FuzzSketchMergeBinary:./graph/ \
	FuzzToolArgs:./assistant/ \
	FuzzReadTraceFile:./nezha/ \
	FuzzReadMetricFile:./nezha/ \
	FuzzReadFaults:./nezha/

.PHONY: fuzz
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; pkg=$${t#*:}; log=$$(mktemp); \
		echo "== fuzz $$name $$pkg ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) -parallel=2 $$pkg >$$log 2>&1 \
			|| { tail -30 $$log; rm -f $$log; exit 1; }; rm -f $$log; \
	done

TEST_DEPS += fuzz
