# assistant: the built-in engine's evaluation over fixtures scenarios (fails
# below a 90% pass rate). The LLM engine is tested in `go test` against the
# local OpenAI-compatible stub in assistant/llmstub; no peers to install.
BENCH_CMDS += "$(GO) run ./cmd/meshlens eval-assistant --cases assistant/testdata/eval"

.PHONY: assistant-eval
assistant-eval:
	$(GO) run ./cmd/meshlens eval-assistant --cases assistant/testdata/eval -v
