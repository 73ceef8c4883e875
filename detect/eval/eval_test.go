package eval

import (
	"bytes"
	"strings"
	"testing"

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
