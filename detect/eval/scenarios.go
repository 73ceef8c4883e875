package eval

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/meshlens/meshlens/fixtures"
)

// Evaluation-only scenarios (on top of the fixtures' own): faults mid-graph,
// gRPC failures, two faults in one run, a small shift, a fault-free day.
//
//go:embed scenarios/*.yaml
var extra embed.FS

// Scenarios returns the fixtures' scenarios followed by the evaluation's own.
func Scenarios() ([]*fixtures.Scenario, error) {
	var out []*fixtures.Scenario
	for _, n := range fixtures.Names() {
		sc, err := fixtures.Load(n)
		if err != nil {
			return nil, fmt.Errorf("load scenario %s: %w", n, err)
		}
		out = append(out, sc)
	}
	ents, err := extra.ReadDir("scenarios")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		b, err := extra.ReadFile(path.Join("scenarios", e.Name()))
		if err != nil {
			return nil, err
		}
		sc, err := fixtures.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("parse eval scenario %s: %w", e.Name(), err)
		}
		out = append(out, sc)
	}
	return out, nil
}

// Lookup finds a scenario by name among Scenarios.
func Lookup(name string) (*fixtures.Scenario, error) {
	all, err := Scenarios()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(all, func(s *fixtures.Scenario) bool { return strings.EqualFold(s.Name, name) })
	if i < 0 {
		return nil, fmt.Errorf("unknown scenario %q", name)
	}
	return all[i], nil
}
