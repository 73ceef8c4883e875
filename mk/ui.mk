# Dashboard front end (web/ui): npm ci + Vite build before the Go build, which
# embeds web/ui/dist; browser tests with Debian's Chromium in `make test`.
UI_DIR := web/ui
UI_SRC := $(wildcard $(UI_DIR)/src/*) $(UI_DIR)/index.html $(UI_DIR)/vite.config.js
# npm ci writes node_modules/.package-lock.json: newer than the lock file means installed.
UI_NODE_MODULES := $(UI_DIR)/node_modules/.package-lock.json
UI_DIST := $(UI_DIR)/dist/index.html
# Screenshots of the browser tests.
UI_ARTIFACTS ?= $(CURDIR)/bin/ui-artifacts

UI_DEPS += $(UI_DIST)
TEST_DEPS += ui-chromium ui-unit ui-e2e
BENCH_CMDS += $(UI_DIR)/bench.sh

.PHONY: ui ui-chromium ui-unit ui-e2e ui-bench

ui: $(UI_DIST)

$(UI_NODE_MODULES): $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	cd $(UI_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Rebuilt only when a source, the lock file or the config changed, or dist is missing.
$(UI_DIST): $(UI_NODE_MODULES) $(UI_SRC)
	cd $(UI_DIR) && npm run --silent build -- --logLevel warn
	@touch $@

ui-chromium:
	@scripts/install-chromium.sh

# Front-end unit tests (node's test runner).
ui-unit: $(UI_NODE_MODULES)
	cd $(UI_DIR) && node --test test/

# Browser tests: the mock API (bad input, optional endpoints, reconnects) and
# the real `meshlens serve --demo` on a free loopback port.
ui-e2e: build ui-chromium
	cd $(UI_DIR) && MESHLENS_BIN=$(abspath $(BIN)) MESHLENS_INTEGRATION=1 MESHLENS_ARTIFACTS=$(UI_ARTIFACTS) \
		node --test --test-concurrency=1 e2e/

ui-bench: $(UI_DIST) ui-chromium
	$(UI_DIR)/bench.sh
