package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshlens/meshlens/detect/eval"
	"github.com/meshlens/meshlens/fixtures"
)

func init() {
	register("eval", "evaluate the detectors: eval detect --scenario NAME|FILE|all [--seed N]; eval rca --petshop DIR; eval nezha --dir DIR [--signals traces|all]; eval bench [--edges N]; eval assistant [--cases DIR]", runEval)
}

func runEval(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("eval: want a subcommand: detect, rca, nezha, assistant or bench")
	}
	switch args[0] {
	case "assistant":
		return runEvalAssistant(ctx, args[1:])
	case "detect":
		return evalDetect(args[1:])
	case "rca":
		return evalRCA(args[1:])
	case "nezha":
		return evalNezha(args[1:]) // cmd/meshlens/nezha.go
	case "bench":
		fs := flag.NewFlagSet("eval bench", flag.ContinueOnError)
		edges := fs.Int("edges", 10000, "edges in the synthetic mesh")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return eval.Bench(os.Stdout, *edges)
	}
	return fmt.Errorf("eval: unknown subcommand %q (want detect, rca, nezha, assistant or bench)", args[0])
}

func evalDetect(args []string) error {
	fs := flag.NewFlagSet("eval detect", flag.ContinueOnError)
	name := fs.String("scenario", "all", "scenario name, YAML file, or all")
	seed := fs.Int64("seed", 1, "simulator seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var scs []*fixtures.Scenario
	switch {
	case *name == "all":
		all, err := eval.Scenarios()
		if err != nil {
			return err
		}
		scs = all
	case strings.HasSuffix(*name, ".yaml") || strings.HasSuffix(*name, ".yml"):
		sc, err := fixtures.LoadFile(*name)
		if err != nil {
			return fmt.Errorf("load scenario file %s: %w", *name, err)
		}
		scs = append(scs, sc)
	default:
		sc, err := eval.Lookup(*name)
		if err != nil {
			return err
		}
		scs = append(scs, sc)
	}
	var sum eval.Summary
	for _, sc := range scs {
		r, err := eval.RunScenario(sc, *seed, eval.ScenarioConfig(sc))
		if err != nil {
			return err
		}
		eval.WriteScenario(os.Stdout, r)
		sum.Add(r)
	}
	eval.WriteSummary(os.Stdout, &sum)
	return nil
}

func evalRCA(args []string) error {
	fs := flag.NewFlagSet("eval rca", flag.ContinueOnError)
	dir := fs.String("petshop", "", "PetShop dataset directory (scenario folders with graph.csv)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("eval rca: --petshop DIR is required")
	}
	res, err := eval.RunPetShop(*dir)
	if err != nil {
		return err
	}
	eval.WritePetShop(os.Stdout, res)
	return nil
}
