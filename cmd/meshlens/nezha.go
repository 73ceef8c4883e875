package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/meshlens/meshlens/nezha"
)

// evalNezha runs `meshlens eval nezha --dir DIR [--signals traces|all|both]`.
func evalNezha(args []string) error {
	fs := flag.NewFlagSet("eval nezha", flag.ContinueOnError)
	dir := fs.String("dir", "", "Nezha dataset directory (day folders with a fault list, metric/ and trace/), or one day folder")
	signals := fs.String("signals", "both", "traces (mesh view only), all (traces + pod metrics) or both")
	rank := fs.String("rank", "pooled", "root-cause ranking scored: recent (the incident's recent anomalies, noisy services discounted), pooled (every recent anomaly, across incidents) or incident (the incident's own ranking)")
	structure := fs.Bool("structure", true, "add trace-structure evidence (calls per span of each operation, self time)")
	synthetic := fs.String("synthetic", "", "move every labelled fault onto a seeded pod as a synthetic fault rewritten into the real spans: network_delay:DURATION or cpu_contention:FACTOR; with --seeds, a comma list of them")
	seed := fs.Uint64("seed", 1, "seed of the synthetic faults' pods")
	seeds := fs.String("seeds", "", "run the --synthetic faults under several seeds (N for 1..N, A-B or a comma list) and print only their summed table")
	perFault := fs.Bool("synthetic-per-fault", false, "pick a new synthetic pod for every fault (default: a run of faults on one labelled pod stays on one synthetic pod, as the dataset injects)")
	explain := fs.Int("explain", 0, "print under each fault the first N root causes of its ranking, with scores and explanations")
	recent := fs.Duration("recent", 0, "rank the anomalies fired this long before scoring time (0: the default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("eval nezha: --dir DIR is required")
	}
	var modes []string
	switch *signals {
	case "both":
		modes = []string{nezha.SignalsTraces, nezha.SignalsAll}
	case nezha.SignalsTraces, nezha.SignalsAll:
		modes = []string{*signals}
	default:
		return fmt.Errorf("eval nezha: --signals %q: want traces, all or both", *signals)
	}
	if *seeds != "" {
		return syntheticSuite(*dir, *synthetic, *seeds, modes, *perFault, *structure)
	}
	var syn *nezha.SyntheticSpec
	if *synthetic != "" {
		sp, err := nezha.ParseSynthetic(*synthetic, *seed)
		if err != nil {
			return fmt.Errorf("eval nezha: --synthetic: %w", err)
		}
		sp.PerFault = *perFault
		syn = &sp
	}
	began := time.Now()
	loaded, err := loadDays(*dir)
	if err != nil {
		return err
	}
	if syn != nil {
		for i, l := range loaded {
			loaded[i] = nezha.Synthesize(l, *syn)
		}
	}
	fmt.Printf("loaded %d day(s) in %s\n", len(loaded), time.Since(began).Round(time.Millisecond))
	for _, mode := range modes {
		var res []*nezha.DayResult
		for _, l := range loaded {
			cfg := nezha.DefaultEvalConfig(mode)
			switch *rank {
			case "pooled":
			case "recent":
				cfg.RankPooled = false
			case "incident":
				cfg.Rank.Recent = 0
			default:
				return fmt.Errorf("eval nezha: --rank %q: want recent, pooled or incident", *rank)
			}
			cfg.Structure = *structure
			if *recent > 0 {
				cfg.Rank.Recent = *recent
			}
			r, err := nezha.EvalDay(l, cfg)
			if err != nil {
				fmt.Fprintf(os.Stderr, "eval nezha: day %s: %v\n", l.Day.Name, err)
				continue
			}
			res = append(res, r)
		}
		fmt.Println()
		nezha.Write(os.Stdout, res, nezha.WriteOptions{Explain: *explain})
	}
	for _, l := range loaded {
		fmt.Println()
		nezha.WriteSignal(os.Stdout, l.Day.Name, nezha.TraceSignal(l))
	}
	fmt.Printf("\npaper (Nezha, Train Ticket, metrics+traces+logs): top1=0.867 top3=0.978; whole run %s\n", time.Since(began).Round(time.Millisecond))
	return nil
}

// loadDays reads every day folder under dir. A day that cannot be read at
// all is reported and the others go on; none readable is an error.
func loadDays(dir string) ([]*nezha.Loaded, error) {
	days, err := nezha.FindDays(dir)
	if err != nil {
		return nil, err
	}
	loaded := make([]*nezha.Loaded, 0, len(days))
	for _, d := range days {
		l, err := nezha.Load(d)
		if err != nil {
			fmt.Fprintf(os.Stderr, "eval nezha: day %s skipped: %v\n", d.Name, err)
			continue
		}
		loaded = append(loaded, l)
	}
	if len(loaded) == 0 {
		return nil, fmt.Errorf("eval nezha: no readable day under %s", dir)
	}
	return loaded, nil
}

// syntheticSuite runs `eval nezha --synthetic K1,K2 --seeds N`: every kind
// under every seed, summed per kind.
func syntheticSuite(dir, kinds, seedList string, modes []string, perFault, structure bool) error {
	if kinds == "" {
		return errors.New("eval nezha: --seeds needs --synthetic KIND:SIZE[,KIND:SIZE...]")
	}
	seeds, err := nezha.ParseSeeds(seedList)
	if err != nil {
		return fmt.Errorf("eval nezha: --seeds: %w", err)
	}
	specs := strings.Split(kinds, ",")
	for _, s := range specs {
		if _, err := nezha.ParseSynthetic(s, 1); err != nil {
			return fmt.Errorf("eval nezha: --synthetic: %w", err)
		}
	}
	began := time.Now()
	loaded, err := loadDays(dir)
	if err != nil {
		return err
	}
	for _, mode := range modes {
		cfg := nezha.DefaultEvalConfig(mode)
		cfg.Structure = structure
		rows, err := nezha.RunSuite(loaded, specs, seeds, perFault, cfg)
		if err != nil {
			return fmt.Errorf("eval nezha: %w", err)
		}
		nezha.WriteSuite(os.Stdout, mode, rows)
	}
	fmt.Printf("whole run %s\n", time.Since(began).Round(time.Millisecond))
	return nil
}

func init() {
	register("replay", "replay a dataset to a running meshlens over OTLP: replay nezha --dir DIR [--day NAME] [--speed 60] --otlp-endpoint URL", runReplay)
}

func runReplay(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "nezha" {
		return errors.New("replay: want a dataset: replay nezha --dir DIR --otlp-endpoint URL")
	}
	fs := flag.NewFlagSet("replay nezha", flag.ContinueOnError)
	dir := fs.String("dir", "", "Nezha dataset directory or one day folder")
	day := fs.String("day", "", "day folder to replay (default: every day, in order)")
	speed := fs.Float64("speed", 60, "dataset seconds per wall-clock second")
	endpoint := fs.String("otlp-endpoint", "http://127.0.0.1:4318", "OTLP/HTTP endpoint of a running meshlens serve")
	maxGap := fs.Duration("max-gap", 2*time.Minute, "shorten dataset gaps between trace files to this (0 keeps them)")
	sampling := fs.Float64("sampling", 0.25, "sampling.probability sent with each span (the dataset keeps one trace in four); 0 sends none")
	withMetrics := fs.Bool("metrics", true, "also send the pods' CPU and memory rows to /v1/metrics, as kubeletstats' k8s.pod.*_limit_utilization")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("replay nezha: --dir DIR is required")
	}
	days, err := nezha.FindDays(*dir)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, d := range days {
		if *day != "" && d.Name != *day {
			continue
		}
		l, err := nezha.Load(d)
		if err != nil {
			return err
		}
		for _, p := range l.Problems {
			log.Warn("bad input skipped", "item", p.Item, "err", p.Err)
		}
		log.Info("replaying", "day", d.Name, "spans", len(l.Spans), "faults", len(l.Faults), "speed", *speed, "endpoint", *endpoint)
		st, err := nezha.Replay(ctx, l, nezha.ReplayConfig{Endpoint: *endpoint, Speed: *speed, MaxGap: *maxGap, SamplingProbability: *sampling, Metrics: *withMetrics}, log)
		fmt.Printf("day %s: sent %d spans in %d OTLP requests and %d pod metric rows in %s\n", d.Name, st.Spans, st.Requests, st.MetricRows, st.Elapsed.Round(time.Millisecond))
		if err != nil {
			return err
		}
	}
	return nil
}
