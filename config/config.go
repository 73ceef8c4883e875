// Package config loads meshlens' configuration: defaults in code, a strict
// YAML file on top, environment overrides for secrets, one Validate.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/assistant"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/collector/metrics"
	"github.com/meshlens/meshlens/collector/ratelimit"
	"github.com/meshlens/meshlens/collector/traces"
	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/storage"
)

// Duration is a time.Duration written as "10s", "5m" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"10s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q: %v", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole configuration.
type Config struct {
	HTTP      HTTP             `yaml:"http"`
	DataDir   string           `yaml:"dataDir"`
	Graph     Graph            `yaml:"graph"`
	Demo      Demo             `yaml:"demo"`
	Log       Log              `yaml:"log"`
	Detect    detect.Config    `yaml:"detect"`
	Metrics   metrics.Config   `yaml:"metrics"`
	Traces    traces.Config    `yaml:"traces"`
	Assistant assistant.Config `yaml:"assistant"`
	Storage   storage.Config   `yaml:"storage"`
	Auth      auth.Config      `yaml:"auth"`
	// Receivers hardens the telemetry receivers (trace ports, remote-write).
	Receivers Receivers `yaml:"receivers"`
}

// Receivers are the TLS and admission limits shared by every receiver:
// OTLP gRPC/HTTP, Jaeger, Zipkin (their own ports) and remote-write (on
// http.addr, which uses http.tls).
type Receivers struct {
	TLS    auth.TLS         `yaml:"tls"`
	Limits ratelimit.Config `yaml:"limits"`
}

// HTTP is the API, dashboard and remote-write listener.
type HTTP struct {
	Addr string   `yaml:"addr"`
	TLS  auth.TLS `yaml:"tls"`
}

// Graph sizes the in-memory live graph.
type Graph struct {
	Resolution Duration `yaml:"resolution"`
	Window     Duration `yaml:"window"`
	// DefaultCluster names the cluster of nodes reported without one (Linkerd,
	// tracing SDKs), so they join the nodes Istio reports; Istio's default is "Kubernetes".
	DefaultCluster string `yaml:"defaultCluster"`
	MaxNodes       int    `yaml:"maxNodes"`
	MaxEdges       int    `yaml:"maxEdges"`
	MaxLabelLen    int    `yaml:"maxLabelLen"`
}

// Demo runs a simulated mesh into the graph.
type Demo struct {
	Scenario string `yaml:"scenario"` // empty: no demo
	Seed     int64  `yaml:"seed"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Default is the configuration used with no file.
func Default() Config {
	return Config{
		// Loopback: an open server must not face the network (see auth.allowInsecure).
		HTTP:    HTTP{Addr: "127.0.0.1:8080"},
		DataDir: "./data",
		Graph: Graph{Resolution: Duration(10 * time.Second), Window: Duration(time.Hour),
			DefaultCluster: "Kubernetes", MaxNodes: 50_000, MaxEdges: 200_000, MaxLabelLen: 256},
		Demo:      Demo{Seed: 1},
		Log:       Log{Level: "info", Format: "text"},
		Detect:    detect.DefaultConfig(),
		Metrics:   metrics.DefaultConfig(),
		Traces:    traces.DefaultConfig(),
		Assistant: assistant.DefaultConfig(),
		Storage:   storage.DefaultConfig(),
		Auth:      auth.DefaultConfig(),
		Receivers: Receivers{Limits: ratelimit.DefaultConfig()},
	}
}

// Load reads path over the defaults with strict decoding: an unknown key is an error.
func Load(path string) (Config, error) {
	cfg := Default()
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	if err := Decode(f, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Decode strictly decodes YAML from r into cfg, keeping cfg's values for absent keys.
func Decode(r io.Reader, cfg *Config) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return cleanYAMLError(err)
	}
	return nil
}

// cleanYAMLError turns yaml.v3's "field x not found in type config.HTTP" into
// "unknown key "x"" lines.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	lines := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if i := strings.Index(e, "field "); i >= 0 && strings.Contains(e, " not found in type ") {
			rest := e[i+len("field "):]
			key := rest[:strings.Index(rest, " not found")]
			lines = append(lines, fmt.Sprintf("%sunknown key %q", e[:i], key))
			continue
		}
		lines = append(lines, e)
	}
	return errors.New(strings.Join(lines, "\n"))
}

// Validate reports every problem, one per line, each with its key path.
func (c *Config) Validate() error {
	var p problems
	p.addr("http.addr", c.HTTP.Addr, false)
	if c.DataDir == "" {
		p.add("dataDir", "must not be empty")
	}
	res, win := c.Graph.Resolution.D(), c.Graph.Window.D()
	if res <= 0 {
		p.add("graph.resolution", "must be > 0")
	} else if res < time.Second {
		p.add("graph.resolution", "must be at least 1s")
	}
	if win <= 0 {
		p.add("graph.window", "must be > 0")
	} else if res > 0 && win < res {
		p.add("graph.window", "must be at least graph.resolution")
	} else if res > 0 && win/res > 100_000 {
		p.add("graph.window", "holds more than 100000 buckets; raise graph.resolution")
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"graph.maxNodes", c.Graph.MaxNodes}, {"graph.maxEdges", c.Graph.MaxEdges}, {"graph.maxLabelLen", c.Graph.MaxLabelLen}} {
		if f.v < 1 {
			p.add(f.key, "must be > 0")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.add("log.format", fmt.Sprintf("%q is not one of text, json", c.Log.Format))
	}
	p.addSection("detect", c.Detect.Validate())
	p.addSection("metrics", c.Metrics.Validate())
	p.addSection("traces", c.Traces.Validate())
	p.addSection("assistant", c.Assistant.Validate())
	p.addSection("storage", c.Storage.Validate())
	p.addSection("http.tls", c.HTTP.TLS.Validate())
	p.addSection("auth", c.Auth.Validate())
	p.addSection("receivers.tls", c.Receivers.TLS.Validate())
	p.addSection("receivers.limits", c.Receivers.Limits.Validate())
	if err := c.Auth.CheckListen(c.HTTP.Addr); err != nil {
		p.add("http.addr", err.Error())
	}
	return p.err()
}

type problems []string

func (p *problems) add(path, msg string) { *p = append(*p, path+": "+msg) }

// addSection adds a component's own problems under its section name.
func (p *problems) addSection(section string, msgs []string) {
	for _, m := range msgs {
		*p = append(*p, section+"."+m)
	}
}

func (p *problems) addr(path, addr string, optional bool) {
	if addr == "" {
		if !optional {
			p.add(path, "must not be empty")
		}
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.add(path, fmt.Sprintf("%q is not host:port", addr))
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// ValidationError lists every problem found by Validate.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string { return strings.Join(e.Problems, "\n") }

// ApplyEnv applies environment overrides (secrets and deployment settings
// that must not live in the file).
func ApplyEnv(c *Config, getenv func(string) string) {
	if v := getenv("MESHLENS_HTTP_ADDR"); v != "" {
		c.HTTP.Addr = v
	}
	if v := getenv("MESHLENS_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	c.Assistant.ApplyEnv(getenv)
	c.Auth.ApplyEnv(getenv) // MESHLENS_AUTH_TOKEN_FILES
}
