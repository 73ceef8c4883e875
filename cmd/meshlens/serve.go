package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/config"
)

// demoFlag implements --demo and --demo=SCENARIO.
type demoFlag struct{ scenario *string }

func (d demoFlag) String() string {
	if d.scenario == nil {
		return ""
	}
	return *d.scenario
}
func (d demoFlag) Set(s string) error {
	if s == "true" {
		s = "demo" // bookinfo with a fault every 10 minutes
	} else if s == "false" {
		s = ""
	}
	*d.scenario = s
	return nil
}
func (d demoFlag) IsBoolFlag() bool { return true }

func init() {
	register("serve", "run the meshlens server", runServe)
}

// serveFlags binds the flags that override config values; set only when given.
func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config file (default: built-in defaults)")
	var demo string
	fs.Var(demoFlag{&demo}, "demo", "run a simulated mesh (--demo: bookinfo with a fault every 10 minutes, --demo=online-boutique, ...)")
	overrides := map[string]*string{}
	for _, f := range []struct{ name, usage string }{
		{"http-addr", "HTTP listen address (API, dashboard, remote-write)"},
		{"data-dir", "data directory"},
	} {
		overrides[f.name] = fs.String(f.name, "", f.usage)
	}
	for _, name := range extraAddrFlags {
		overrides[name.flag] = fs.String(name.flag, "", name.usage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %v", fs.Args())
	}
	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	config.ApplyEnv(&cfg, os.Getenv)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["demo"] {
		cfg.Demo.Scenario = demo
	}
	if set["http-addr"] {
		cfg.HTTP.Addr = *overrides["http-addr"]
	}
	if set["data-dir"] {
		cfg.DataDir = *overrides["data-dir"]
	}
	for _, f := range extraAddrFlags {
		if set[f.flag] {
			f.apply(&cfg, *overrides[f.flag])
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%s", indent(err.Error()))
	}
	log := newLogger(cfg.Log)
	return app.Run(ctx, cfg, log)
}

// extraAddrFlags are the receivers' listen-address flags; "" disables a receiver.
var extraAddrFlags = []addrFlag{
	{"otlp-grpc-addr", "OTLP/gRPC receiver address (traces, metrics)", func(c *config.Config, v string) { c.Traces.OTLPGRPCAddr = v }},
	{"otlp-http-addr", "OTLP/HTTP receiver address (traces, metrics)", func(c *config.Config, v string) { c.Traces.OTLPHTTPAddr = v }},
	{"jaeger-grpc-addr", "Jaeger api_v2 gRPC receiver address", func(c *config.Config, v string) { c.Traces.JaegerGRPCAddr = v }},
	{"jaeger-http-addr", "Jaeger Thrift-over-HTTP receiver address", func(c *config.Config, v string) { c.Traces.JaegerHTTPAddr = v }},
	{"zipkin-addr", "Zipkin receiver address", func(c *config.Config, v string) { c.Traces.ZipkinAddr = v }},
}

type addrFlag struct {
	flag, usage string
	apply       func(*config.Config, string)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
