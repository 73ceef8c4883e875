package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	case "bench":
		return fixturesBench()
	}
	return fmt.Errorf("fixtures: unknown subcommand %q (want list, serve-metrics or bench)", args[0])
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

// benchFloor is how much faster than real time the simulator must run: an
// evaluation replays hours of a mesh in seconds.
const benchFloor = 1000.0

// fixturesBench prints how fast the simulator plays each base scenario in
// virtual time (10s steps, as evaluations use), and the Istio exporter's
// scrape cost, with the ratio to the floor.
func fixturesBench() error {
	for _, name := range []string{"bookinfo", "online-boutique"} {
		sc, err := fixtures.Load(name)
		if err != nil {
			return err
		}
		sim := fixtures.NewSimulator(sc, 1)
		const virtual = 6 * time.Hour
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var obs int
		start := time.Now()
		for t := t0; t.Before(t0.Add(virtual)); t = t.Add(10 * time.Second) {
			obs += len(sim.Step(t, t.Add(10*time.Second)))
		}
		wall := time.Since(start)
		speed := virtual.Seconds() / wall.Seconds()
		fmt.Printf("fixtures %-16s simulate %v in %v: %.0fx real time, %.0f observations/s (floor %.0fx: ratio %.1f)\n",
			name, virtual, wall.Round(time.Millisecond), speed, float64(obs)/wall.Seconds(), benchFloor, speed/benchFloor)

		exp := fixtures.NewIstioExporter(fixtures.NewSimulator(sc, 1), nil)
		exp.Advance(t0)
		const scrapes = 200
		var bytes int64
		start = time.Now()
		for i := 1; i <= scrapes; i++ {
			exp.Advance(t0.Add(time.Duration(i) * 15 * time.Second))
			n, err := exp.WriteTo(io.Discard)
			if err != nil {
				return err
			}
			bytes = n
		}
		per := time.Since(start) / scrapes
		fmt.Printf("fixtures %-16s istio exporter: %v per 15s scrape, %d bytes\n", name, per.Round(time.Microsecond), bytes)
	}
	return nil
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
