// Package assistant answers questions about the mesh from meshlens' own data
// (graph, detect) with or without an LLM, and turns fixes into Istio resource
// proposals that only an authorised human can approve.
package assistant

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Engines.
const (
	EngineBuiltin = "builtin"
	EngineOpenAI  = "openai"
)

// Appliers.
const (
	ApplierExport  = "export"
	ApplierKubectl = "kubectl"
)

// APIKeyEnv is the only place the LLM API key is read from: never the config file.
const APIKeyEnv = "MESHLENS_LLM_API_KEY"

// LLMConfig configures the OpenAI-compatible engine.
type LLMConfig struct {
	// BaseURL of the OpenAI-compatible API, e.g. https://api.openai.com/v1,
	// http://127.0.0.1:11434/v1 (Ollama), http://vllm:8000/v1.
	BaseURL string `yaml:"baseURL"`
	Model   string `yaml:"model"`
	// APIType is openai (default) or azure; Azure also uses APIVersion.
	APIType    string `yaml:"apiType"`
	APIVersion string `yaml:"apiVersion"`
	// MaxSteps bounds the tool-calling loop (model calls per question); default 6.
	MaxSteps int `yaml:"maxSteps"`
	// MaxTokens is the completion budget of one model call; default 800.
	MaxTokens int `yaml:"maxTokens"`
	// MaxTotalTokens bounds prompt+completion tokens of one question; default 24000.
	MaxTotalTokens int `yaml:"maxTotalTokens"`
	// ToolOutputBytes truncates each tool result sent to the model; default 6000.
	ToolOutputBytes int `yaml:"toolOutputBytes"`
	// Timeout bounds one model call; default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Stream asks for a streamed answer (SSE from the endpoint); default true.
	Stream bool `yaml:"stream"`
	// Redact replaces service, namespace and principal names with opaque
	// tokens before they leave the process, and maps them back in answers.
	Redact bool `yaml:"redact"`
	// APIKey is set from MESHLENS_LLM_API_KEY by ApplyEnv, never decoded from YAML.
	APIKey string `yaml:"-"`
}

// Config is the assistant section of config.yaml.
type Config struct {
	Enabled bool      `yaml:"enabled"`
	Engine  string    `yaml:"engine"` // builtin (default) or openai
	LLM     LLMConfig `yaml:"llm"`
	// Approvers may approve or reject proposals. PLACEHOLDER until the
	// authentication issue lands: identities come from IdentityHeader, which
	// any client can set, so only use it on a trusted local listener.
	Approvers      []string `yaml:"approvers"`
	IdentityHeader string   `yaml:"identityHeader"` // default X-Meshlens-User; "" after Validate never
	// ProposalTTL: a pending proposal expires after this; default 24h.
	ProposalTTL time.Duration `yaml:"proposalTTL"`
	// Applier is export (default: write YAML files to ExportDir) or kubectl.
	Applier        string `yaml:"applier"`
	ExportDir      string `yaml:"exportDir"`      // default data/proposals
	KubectlContext string `yaml:"kubectlContext"` // required with applier kubectl
	KubectlPath    string `yaml:"kubectlPath"`    // default kubectl from PATH
	// MaxQuestionBytes: longer questions are refused; default 8192.
	MaxQuestionBytes int `yaml:"maxQuestionBytes"`
	// SessionTurns kept per chat session for follow-up questions; default 20.
	SessionTurns int `yaml:"sessionTurns"`
}

// DefaultConfig is the assistant with the built-in engine and no network.
func DefaultConfig() Config {
	return Config{
		Enabled: true,
		Engine:  EngineBuiltin,
		LLM: LLMConfig{
			BaseURL: "https://api.openai.com/v1", Model: "gpt-4o-mini", APIType: "openai",
			MaxSteps: 6, MaxTokens: 800, MaxTotalTokens: 24000, ToolOutputBytes: 6000,
			Timeout: 30 * time.Second, Stream: true,
		},
		IdentityHeader:   "X-Meshlens-User",
		ProposalTTL:      24 * time.Hour,
		Applier:          ApplierExport,
		ExportDir:        filepath.Join("data", "proposals"),
		MaxQuestionBytes: 8192,
		SessionTurns:     20,
	}
}

// ApplyEnv reads secrets from the environment (the API key is never in the file).
func (c *Config) ApplyEnv(getenv func(string) string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if k := getenv(APIKeyEnv); k != "" {
		c.LLM.APIKey = k
	}
}

// Validate reports every problem as "key.path: message".
func (c Config) Validate() []string {
	var p []string
	add := func(k, f string, a ...any) { p = append(p, k+": "+fmt.Sprintf(f, a...)) }
	switch c.Engine {
	case EngineBuiltin:
	case EngineOpenAI:
		u, err := url.Parse(c.LLM.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("llm.baseURL", "%q must be an http(s) URL", c.LLM.BaseURL)
		}
		if c.LLM.Model == "" {
			add("llm.model", "required with engine openai")
		}
		switch c.LLM.APIType {
		case "", "openai":
		case "azure":
			if c.LLM.APIVersion == "" {
				add("llm.apiVersion", "required with apiType azure")
			}
		default:
			add("llm.apiType", "%q must be openai or azure", c.LLM.APIType)
		}
	default:
		add("engine", "%q must be builtin or openai", c.Engine)
	}
	if c.LLM.MaxSteps < 1 || c.LLM.MaxSteps > 20 {
		add("llm.maxSteps", "%d must be between 1 and 20", c.LLM.MaxSteps)
	}
	if c.LLM.MaxTokens < 16 {
		add("llm.maxTokens", "%d must be at least 16", c.LLM.MaxTokens)
	}
	if c.LLM.MaxTotalTokens < c.LLM.MaxTokens {
		add("llm.maxTotalTokens", "%d must be at least llm.maxTokens (%d)", c.LLM.MaxTotalTokens, c.LLM.MaxTokens)
	}
	if c.LLM.ToolOutputBytes < 256 {
		add("llm.toolOutputBytes", "%d must be at least 256", c.LLM.ToolOutputBytes)
	}
	if c.LLM.Timeout <= 0 {
		add("llm.timeout", "must be > 0")
	}
	if c.ProposalTTL <= 0 {
		add("proposalTTL", "must be > 0")
	}
	switch c.Applier {
	case ApplierExport:
		if c.ExportDir == "" {
			add("exportDir", "required with applier export")
		}
	case ApplierKubectl:
		if c.KubectlContext == "" {
			add("kubectlContext", "required with applier kubectl (meshlens never applies to the current context by accident)")
		}
	default:
		add("applier", "%q must be export or kubectl", c.Applier)
	}
	if c.MaxQuestionBytes < 64 || c.MaxQuestionBytes > 1<<20 {
		add("maxQuestionBytes", "%d must be between 64 and 1048576", c.MaxQuestionBytes)
	}
	if c.SessionTurns < 0 {
		add("sessionTurns", "must not be negative")
	}
	for i, a := range c.Approvers {
		if a == "" {
			add(fmt.Sprintf("approvers[%d]", i), "must not be empty")
		}
	}
	return p
}
