package eval

import (
	"bytes"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/fixtures"
)

func TestPetShopMini(t *testing.T) {
	res, err := RunPetShop("testdata/petshop-mini")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Issues) != 2 {
		t.Fatalf("%d issues, want 2", len(res.Issues))
	}
	for _, is := range res.Issues {
		if is.Rank != 0 {
			t.Errorf("%s (%s): root cause %s ranked %d: %v", is.Issue, is.Metric, is.RootCause, is.Rank, is.Ranking)
		}
	}
	var b bytes.Buffer
	WritePetShop(&b, res)
	if !strings.Contains(b.String(), "overall top1=1.000 top3=1.000") {
		t.Errorf("summary line missing:\n%s", b.String())
	}
	if _, err := RunPetShop("testdata/nowhere"); err == nil {
		t.Error("missing directory accepted")
	}
}

func TestScenarioEval(t *testing.T) {
	for _, name := range []string{"bookinfo-ratings-latency", "boutique-payment-errors"} {
		sc, err := fixtures.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RunScenario(sc, 1, ScenarioConfig(sc))
		if err != nil {
			t.Fatal(err)
		}
		if r.Recall != 1 || r.Precision < 0.9 || !r.Faults[0].RootCauseTop1 {
			var b bytes.Buffer
			WriteScenario(&b, r)
			t.Errorf("%s:\n%s", name, b.String())
		}
	}
}

func TestSyntheticSnapshots(t *testing.T) {
	s := SyntheticSnapshots(100, 2, 1)
	if len(s) != 2 || len(s[0].Edges) != 100 || len(s[0].Nodes) == 0 {
		t.Fatalf("bad synthetic mesh: %d snapshots", len(s))
	}
}

// The scenario set must keep covering what the issue asks for: every fault
// kind, leaf and mid-graph targets, noise, diurnal load and a fault-free day.
func TestScenarioCoverage(t *testing.T) {
	all, err := Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	var noisy, diurnal, freeDay, policies bool
	for _, sc := range all {
		for _, f := range sc.Faults {
			kinds[f.Kind] = true
		}
		noisy = noisy || (sc.Noise != nil && sc.Noise.Dispersion > 0 && sc.Noise.Blips != nil && len(sc.Faults) > 0)
		diurnal = diurnal || (sc.Load != nil && sc.Load.Diurnal != nil && len(sc.Faults) > 0)
		freeDay = freeDay || (len(sc.Faults) == 0 && sc.Duration.D().Hours() >= 24 && sc.Load != nil)
		policies = policies || len(sc.Policies) > 0
	}
	for _, k := range []string{fixtures.FaultLatency, fixtures.FaultErrors, fixtures.FaultTrafficDrop, fixtures.FaultTrafficSurge,
		fixtures.FaultUnexpectedEdge, fixtures.FaultMTLSOff, fixtures.FaultBadCanary} {
		if !kinds[k] {
			t.Errorf("no scenario injects %s", k)
		}
	}
	if !noisy || !diurnal || !freeDay || !policies {
		t.Errorf("coverage: noisy with faults %v, diurnal with faults %v, fault-free diurnal day %v, policies %v", noisy, diurnal, freeDay, policies)
	}
	if len(all) < 12 {
		t.Errorf("%d scenarios, want >= 12", len(all))
	}
}

// Under noise (overdispersion, jitter, benign blips) and with a declared
// policy the detectors find every fault and raise no false alarm.
func TestScenarioEvalNoisyAndPolicy(t *testing.T) {
	for _, tt := range []struct {
		name      string
		wantTypes []string
	}{
		{"boutique-noisy-faults", []string{detect.TypeLatency, detect.TypeErrors, detect.TypeTraffic, detect.TypeMTLS}},
		{"boutique-policy-violation", []string{detect.TypePolicy, detect.TypeUnexpected}},
	} {
		sc, err := Lookup(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RunScenario(sc, 1, ScenarioConfig(sc))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		WriteScenario(&b, r)
		if r.Recall != 1 || r.FalseAlarms > 0 {
			t.Errorf("%s:\n%s", tt.name, b.String())
		}
		for _, ty := range tt.wantTypes {
			if r.ByType[ty] == 0 {
				t.Errorf("%s: no %s anomaly (got %v)", tt.name, ty, r.ByType)
			}
		}
	}
}
