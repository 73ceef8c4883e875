package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/fixtures"
)

func init() {
	register("fixtures", "list mesh scenarios or serve one as Istio metrics (fixtures list | serve-metrics)", runFixtures)
}

func runFixtures(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("fixtures: want a subcommand: list, serve-metrics")
	}
	switch args[0] {
	case "list":
		return fixturesList()
	case "serve-metrics":
		return fixturesServeMetrics(ctx, args[1:])
	}
	return fmt.Errorf("fixtures: unknown subcommand %q (want list or serve-metrics)", args[0])
}

func fixturesList() error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICES\tEDGES\tFAULTS\tDESCRIPTION")
	for _, s := range fixtures.Summaries() {
		faults := strings.Join(s.Faults, ",")
		if faults == "" {
			faults = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Name, s.Services, s.Edges, faults, s.Description)
	}
	return tw.Flush()
}

func fixturesServeMetrics(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fixtures serve-metrics", flag.ContinueOnError)
	name := fs.String("scenario", "bookinfo", "embedded scenario name (see meshlens fixtures list)")
	file := fs.String("file", "", "scenario YAML file instead of an embedded one")
	addr := fs.String("addr", "127.0.0.1:15090", "listen address")
	seed := fs.Int64("seed", 1, "random seed")
	exact := fs.Bool("exact", false, "deterministic counts (no Poisson noise), for rate comparisons")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sc *fixtures.Scenario
	var err error
	if *file != "" {
		sc, err = fixtures.LoadFile(*file)
	} else {
		sc, err = fixtures.Load(*name)
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sim := fixtures.NewSimulator(sc, *seed)
	sim.SetExactCounts(*exact)
	exp := fixtures.NewIstioExporter(sim, time.Now)
	exp.Advance(time.Now()) // the scenario starts now
	mux := http.NewServeMux()
	mux.Handle("/stats/prometheus", exp) // where Envoy serves it
	mux.Handle("/metrics", exp)
	mux.Handle("/expected", exp.ExpectedHandler())
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve-metrics: listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving Istio metrics", "scenario", sc.Name, "addr", ln.Addr().String(), "paths", "/stats/prometheus /metrics /expected")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve-metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve-metrics: shutdown: %w", err)
	}
	return nil
}
