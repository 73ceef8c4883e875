package metrics

import (
	"context"
	"math"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshlens/meshlens/fixtures"
	"github.com/meshlens/meshlens/graph"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestScrapeSimulator scrapes the fixtures' Istio exporter in virtual time
// and checks every edge's counts against the simulator's ground truth.
func TestScrapeSimulator(t *testing.T) {
	for _, tc := range []struct {
		name string
		skip time.Duration // scenario time before the first scrape
	}{
		{"online-boutique", 0},
		{"boutique-cart-connect-failures", 9 * time.Minute}, // its fault starts at 10m
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := fixtures.Load(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			sim := fixtures.NewSimulator(sc, 7)
			sim.SetExactCounts(true)
			t0 := time.Date(2025, 11, 3, 10, 0, 0, 0, time.UTC)
			now := t0
			sim.SetOrigin(t0.Add(-tc.skip))
			exp := fixtures.NewIstioExporter(sim, func() time.Time { return now })
			srv := httptest.NewServer(exp)
			defer srv.Close()
			rec := &recorder{}
			c := newTestCollector(t, DefaultConfig(), rec)
			target := Target{Name: "sim", URL: srv.URL, Timeout: 10 * time.Second}

			type key struct {
				src, dst string
				proto    graph.Protocol
			}
			type counts struct{ src, dst, srcErr float64 }
			want := map[key]*counts{}
			got := map[key]*counts{}
			const step = 15 * time.Second
			for i := 0; i <= 16; i++ {
				if i > 0 {
					for _, er := range exp.ExpectedRates(now.Add(-step / 2)) {
						dst := er.DestinationWorkload
						if dst == "unknown" {
							dst = er.DestinationService
						}
						k := key{er.SourceWorkload, dst, er.Protocol}
						w := want[k]
						if w == nil {
							w = &counts{}
							want[k] = w
						}
						w.src += er.Rate * step.Seconds()
						w.dst += er.DestinationRate * step.Seconds()
						w.srcErr += er.Rate * er.ErrorRatio * step.Seconds()
					}
				}
				if _, err := c.scrape(context.Background(), target, now); err != nil {
					t.Fatal(err)
				}
				now = now.Add(step)
			}
			for _, o := range rec.take() {
				dst := o.Dst.Workload
				if dst == "" || o.Dst.Kind == graph.KindService || o.Dst.Kind == graph.KindExternal {
					dst = o.Dst.Service
				}
				src := o.Src.Workload
				if o.Src.Kind == graph.KindUnknown {
					src = "unknown"
				}
				k := key{src, dst, o.Protocol}
				g := got[k]
				if g == nil {
					g = &counts{}
					got[k] = g
				}
				n := float64(o.Requests)
				if o.Protocol == graph.ProtoTCP {
					n = float64(o.ConnOpened)
				}
				switch o.Reporter {
				case graph.ReporterSource:
					g.src += n
					g.srcErr += float64(o.Errors.Total())
				case graph.ReporterDestination:
					g.dst += n
				default:
					t.Errorf("reporter %s: %s", o.Reporter, obsLine(o))
				}
			}
			near := func(got, want float64) bool { return math.Abs(got-want) <= 0.05*want+2 }
			for k, w := range want {
				g := got[k]
				if g == nil {
					t.Errorf("edge %s -> %s %s missing", k.src, k.dst, k.proto)
					continue
				}
				if !near(g.src, w.src) || !near(g.dst, w.dst) || !near(g.srcErr, w.srcErr) {
					t.Errorf("edge %s -> %s %s: source %.0f (errors %.0f), destination %.0f; want %.0f (%.0f), %.0f",
						k.src, k.dst, k.proto, g.src, g.srcErr, g.dst, w.src, w.srcErr, w.dst)
				}
			}
			var errs float64
			for _, g := range got {
				errs += g.srcErr
			}
			t.Logf("%d edges, %.0f failed requests (source view)", len(got), errs)
			for k := range got {
				if want[k] == nil {
					t.Errorf("edge %s -> %s %s not in the scenario", k.src, k.dst, k.proto)
				}
			}
		})
	}
}

// TestOTLPGRPC sends metrics through a real gRPC server on loopback.
func TestOTLPGRPC(t *testing.T) {
	rec := &recorder{}
	c := newTestCollector(t, DefaultConfig(), rec)
	s := grpc.NewServer()
	c.RegisterGRPC(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, v := range []int64{1000, 1250} {
		md := otlpRequests(v, int64(i+1))
		if _, err := client.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
			t.Fatal(err)
		}
	}
	if req, _ := sumRequests(rec.take()); req != 250 {
		t.Errorf("requests = %d, want 250", req)
	}
}
