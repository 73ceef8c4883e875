package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang/snappy"
	"github.com/meshlens/meshlens/collector/metrics"
	"github.com/meshlens/meshlens/graph"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

func init() {
	register("bench-metrics", "measure remote-write and scrape ingest against decode/parse alone", benchMetrics)
}

var istioBuckets = []string{"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"}

// benchSeries is one Istio series family member of the synthetic mesh.
type benchSeries struct {
	labels []prompb.Label
	le     int // bucket index, -1 for counters
	rate   float64
}

// istioMesh builds the series that edges*2 reporters of an Istio mesh export:
// requests, the duration histogram, and request/response byte sums.
func istioMesh(edges int) []benchSeries {
	var out []benchSeries
	for e := 0; e < edges; e++ {
		src, dst := fmt.Sprintf("svc-%d", e%40), fmt.Sprintf("svc-%d", (e*7+1)%40)
		for _, rep := range []string{"source", "destination"} {
			for _, code := range []string{"200", "503"} {
				base := istioLabels(src, dst, "shop", "10.0."+strconv.Itoa(e%250)+".7:15020", "envoy-stats", rep, code)
				rate := 50.0
				if code == "503" {
					rate = 0.5
				}
				with := func(name string, extra ...prompb.Label) []prompb.Label {
					ls := append([]prompb.Label{{Name: "__name__", Value: name}}, base...)
					return append(ls, extra...)
				}
				out = append(out, benchSeries{labels: with("istio_requests_total"), le: -1, rate: rate})
				for i, le := range istioBuckets {
					out = append(out, benchSeries{labels: with("istio_request_duration_milliseconds_bucket", prompb.Label{Name: "le", Value: le}), le: i, rate: rate})
				}
				out = append(out, benchSeries{labels: with("istio_request_duration_milliseconds_sum"), le: -1, rate: rate * 12})
				out = append(out, benchSeries{labels: with("istio_request_duration_milliseconds_count"), le: -1, rate: rate})
				out = append(out, benchSeries{labels: with("istio_request_bytes_sum"), le: -1, rate: rate * 600})
				out = append(out, benchSeries{labels: with("istio_response_bytes_sum"), le: -1, rate: rate * 5000})
			}
		}
	}
	return out
}

// value of series s after step scrapes 15 s apart: cumulative, with buckets
// filling at a fixed shape.
func (s *benchSeries) value(step int) float64 {
	n := s.rate * 15 * float64(step+1)
	if s.le >= 0 {
		return n * min(1, float64(s.le+1)/8)
	}
	return n
}

func benchMetrics(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-metrics", flag.ContinueOnError)
	edges := fs.Int("edges", 100, "mesh edges (each has 2 reporters x 2 outcomes x 25 series)")
	steps := fs.Int("steps", 40, "scrapes (pushes) per round")
	rounds := fs.Int("rounds", 3, "rounds, each on a fresh collector")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the ingest runs to this file")
	pods := fs.Int("pods", 1000, "pods of the resource-metrics run (2 containers, 8 series each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runtime.GOMAXPROCS(1) // the goal is per core
	mesh := istioMesh(*edges)
	t0 := time.Now().Add(-time.Hour).UnixMilli()

	// One snappy-compressed WriteRequest per scrape, as Prometheus sends them.
	payloads := make([][]byte, *steps)
	texts := make([][]byte, *steps)
	for st := range payloads {
		wr := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(mesh))}
		var txt bytes.Buffer
		for i := range mesh {
			v := mesh[i].value(st)
			wr.Timeseries[i] = prompb.TimeSeries{Labels: mesh[i].labels, Samples: []prompb.Sample{{Value: v, Timestamp: t0 + int64(st)*15000}}}
			writeTextSample(&txt, mesh[i].labels, v)
		}
		raw, err := wr.Marshal()
		if err != nil {
			return err
		}
		payloads[st] = snappy.Encode(nil, raw)
		texts[st] = txt.Bytes()
	}
	samplesPerStep := len(mesh)
	measured := float64(samplesPerStep * (*steps - 1) * *rounds)
	fmt.Printf("payload: %d series per push (Istio, 23 labels each), %d pushes x %d rounds, GOMAXPROCS=1\n", samplesPerStep, *steps-1, *rounds)

	// Floor: snappy + protobuf unmarshal only.
	var decode span
	var buf []byte
	for r := 0; r < *rounds; r++ {
		sp, err := measure(func() error { return decodeAll(payloads[1:], &buf) })
		if err != nil {
			return err
		}
		decode.add(sp)
	}

	ingest := func(sinkFor func() metrics.Sink) (span, uint64, error) {
		var total span
		var obs uint64
		for r := 0; r < *rounds; r++ {
			c, err := metrics.New(metrics.DefaultConfig(), sinkFor(), nil, nil)
			if err != nil {
				return span{}, 0, err
			}
			if _, err := c.IngestRemoteWrite(payloads[0]); err != nil { // series created: steady state after this
				return span{}, 0, err
			}
			sp, err := measure(func() error {
				for _, p := range payloads[1:] {
					if _, err := c.IngestRemoteWrite(p); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return span{}, 0, err
			}
			total.add(sp)
			obs += c.Status().Observations
		}
		return total, obs, nil
	}
	toGraph, obs, err := ingest(func() metrics.Sink {
		return graph.New(graph.Config{Resolution: 10 * time.Second, Window: time.Hour})
	})
	if err != nil {
		return err
	}
	alone, _, err := ingest(func() metrics.Sink { return discard{} })
	if err != nil {
		return err
	}
	line := func(what string, sp, floor span, note string) {
		r := func(d time.Duration) float64 { return measured / d.Seconds() }
		fmt.Printf("%-52s %10.0f samples/s wall %10.0f samples/CPU-s", what, r(sp.wall), r(sp.cpu))
		if floor != (span{}) {
			fmt.Printf("  = %3.0f%% of floor (CPU)", 100*floor.cpu.Seconds()/sp.cpu.Seconds())
		}
		fmt.Println(note)
	}
	line("remote-write decode only (snappy + prompb.Unmarshal)", decode, span{}, "  (floor)")
	line("remote-write ingest, no sink", alone, decode, "")
	line("remote-write ingest into graph.Graph", toGraph, decode, fmt.Sprintf("  (%d observations; goal >= 50%% and >= 1e6/s)", obs))

	// Scrape: expfmt parse alone vs parse + ingest, same bodies.
	var parse span
	for r := 0; r < *rounds; r++ {
		sp, err := measure(func() error {
			for _, tx := range texts[1:] {
				p := expfmt.NewTextParser(model.UTF8Validation)
				if _, err := p.TextToMetricFamilies(bytes.NewReader(tx)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		parse.add(sp)
	}
	var scrape span
	for r := 0; r < *rounds; r++ {
		c, err := metrics.New(metrics.DefaultConfig(), discard{}, nil, nil)
		if err != nil {
			return err
		}
		now := time.Now()
		if _, err := c.IngestExposition(texts[0], "text/plain; version=0.0.4", "bench", nil, now); err != nil {
			return err
		}
		sp, err := measure(func() error {
			for i, tx := range texts[1:] {
				if _, err := c.IngestExposition(tx, "text/plain; version=0.0.4", "bench", nil, now.Add(time.Duration(i+1)*15*time.Second)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		scrape.add(sp)
	}
	line("scrape expfmt parse only (TextToMetricFamilies)", parse, span{}, "  (floor)")
	line("scrape parse + ingest", scrape, parse, "")
	return benchPodResources(ctx, *pods, *steps, *rounds)
}

// benchPodResources measures remote-write of pods' cAdvisor CPU and memory
// series with kube-state-metrics limits into the resource sink, against
// decoding the same requests alone.
func benchPodResources(ctx context.Context, pods, steps, rounds int) error {
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	payloads := make([][]byte, steps)
	series := 0
	for st := range payloads {
		var wr prompb.WriteRequest
		add := func(v float64, ls ...prompb.Label) {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: t0 + int64(st)*15000}}})
		}
		for p := 0; p < pods; p++ {
			ns, pod := prompb.Label{Name: "namespace", Value: "shop"}, prompb.Label{Name: "pod", Value: fmt.Sprintf("svc-%d-5b8d9c7f6d-x%04d", p%40, p)}
			for _, c := range []string{"app", "istio-proxy"} {
				ct := prompb.Label{Name: "container", Value: c}
				add(0.1*float64(st*15), prompb.Label{Name: "__name__", Value: "container_cpu_usage_seconds_total"}, ct, prompb.Label{Name: "cpu", Value: "total"}, ns, pod)
				add(200<<20, prompb.Label{Name: "__name__", Value: "container_memory_working_set_bytes"}, ct, ns, pod)
				add(0.5, prompb.Label{Name: "__name__", Value: "kube_pod_container_resource_limits"}, ct, ns, pod, prompb.Label{Name: "resource", Value: "cpu"}, prompb.Label{Name: "unit", Value: "core"})
				add(512<<20, prompb.Label{Name: "__name__", Value: "kube_pod_container_resource_limits"}, ct, ns, pod, prompb.Label{Name: "resource", Value: "memory"}, prompb.Label{Name: "unit", Value: "byte"})
			}
		}
		raw, err := wr.Marshal()
		if err != nil {
			return err
		}
		payloads[st], series = snappy.Encode(nil, raw), len(wr.Timeseries)
	}
	measured := float64(series * (steps - 1) * rounds)
	var decode, ingest span
	readings := uint64(0)
	var buf []byte
	for r := 0; r < rounds; r++ {
		sp, err := measure(func() error { return decodeAll(payloads[1:], &buf) })
		if err != nil {
			return err
		}
		decode.add(sp)
		c, err := metrics.New(metrics.DefaultConfig(), discard{}, nil, nil, metrics.WithResourceSink(discard{}))
		if err != nil {
			return err
		}
		if _, err := c.IngestRemoteWrite(payloads[0]); err != nil {
			return err
		}
		sp, err = measure(func() error {
			for _, p := range payloads[1:] {
				if _, err := c.IngestRemoteWrite(p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		ingest.add(sp)
		readings += c.Status().ResourceReadings
	}
	// CPU and memory per pod and push; memory also on the first push (CPU
	// needs two samples for a rate).
	if want := uint64(pods * (2*(steps-1) + 1) * rounds); readings != want {
		return fmt.Errorf("bench pod resources: %d readings, want %d (2 per pod and push)", readings, want)
	}
	fmt.Printf("pod resources: %d pods x 2 containers (cAdvisor CPU and memory, kube-state-metrics limits) = %d series per push\n", pods, series)
	r := func(d time.Duration) float64 { return measured / d.Seconds() }
	fmt.Printf("%-52s %10.0f samples/s wall %10.0f samples/CPU-s  (floor)\n", "remote-write decode only", r(decode.wall), r(decode.cpu))
	fmt.Printf("%-52s %10.0f samples/s wall %10.0f samples/CPU-s  = %3.0f%% of floor (CPU)\n", "remote-write ingest into the resource sink", r(ingest.wall), r(ingest.cpu), 100*decode.cpu.Seconds()/ingest.cpu.Seconds())
	return ctx.Err()
}

type discard struct{}

// decodeAll decodes remote-write requests the plain way (snappy, then
// prompb.Unmarshal): the floor the collector's decoder is compared with.
func decodeAll(payloads [][]byte, buf *[]byte) error {
	for _, p := range payloads {
		var err error
		if *buf, err = snappy.Decode((*buf)[:cap(*buf)], p); err != nil {
			return err
		}
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(*buf); err != nil {
			return err
		}
	}
	return nil
}

// span is wall and process CPU time (user+system, all threads: with
// GOMAXPROCS=1 that is this work and its GC); the machine is shared, so CPU
// time is the steadier figure.
type span struct{ wall, cpu time.Duration }

func (s *span) add(o span) { s.wall += o.wall; s.cpu += o.cpu }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(fn func() error) (span, error) {
	w, c := time.Now(), cpuNow()
	err := fn()
	return span{time.Since(w), cpuNow() - c}, err
}

func (discard) Ingest([]graph.Observation) {}

func (discard) ObserveResources([]metrics.PodResource) {}

func writeTextSample(b *bytes.Buffer, ls []prompb.Label, v float64) {
	b.WriteString(ls[0].Value)
	b.WriteByte('{')
	for i, l := range ls[1:] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(strings.ReplaceAll(l.Value, `"`, `\"`))
		b.WriteByte('"')
	}
	b.WriteString("} ")
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
}

// istioLabels is the label set (sorted by name, as remote-write wants) of
// one Istio standard metric series of the edge src -> dst in namespace ns.
func istioLabels(src, dst, ns, instance, job, reporter, code string) []prompb.Label {
	return []prompb.Label{
		{Name: "connection_security_policy", Value: "mutual_tls"},
		{Name: "destination_canonical_revision", Value: "v1"},
		{Name: "destination_canonical_service", Value: dst},
		{Name: "destination_cluster", Value: "Kubernetes"},
		{Name: "destination_principal", Value: "spiffe://cluster.local/ns/" + ns + "/sa/" + dst},
		{Name: "destination_service", Value: dst + "." + ns + ".svc.cluster.local"},
		{Name: "destination_service_name", Value: dst},
		{Name: "destination_service_namespace", Value: ns},
		{Name: "destination_workload", Value: dst + "-v1"},
		{Name: "destination_workload_namespace", Value: ns},
		{Name: "instance", Value: instance},
		{Name: "job", Value: job},
		{Name: "reporter", Value: reporter},
		{Name: "request_protocol", Value: "http"},
		{Name: "response_code", Value: code},
		{Name: "response_flags", Value: "-"},
		{Name: "source_canonical_revision", Value: "v1"},
		{Name: "source_canonical_service", Value: src},
		{Name: "source_cluster", Value: "Kubernetes"},
		{Name: "source_principal", Value: "spiffe://cluster.local/ns/" + ns + "/sa/" + src},
		{Name: "source_workload", Value: src + "-v1"},
		{Name: "source_workload_namespace", Value: ns},
	}
}
