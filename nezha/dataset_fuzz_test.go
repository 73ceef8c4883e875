package nezha

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The readers take paths (the dataset is files), so each input is written to
// one file in a directory the fuzz worker reuses.
func fuzzFile(tb testing.TB, dir, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// FuzzReadTraceFile: no trace CSV may panic the reader, and every span it
// keeps has the fields the replay and the evaluation rely on.
func FuzzReadTraceFile(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		var st TraceStats
		spans, probs, err := ReadTraceFile(fuzzFile(t, dir, "08_43_trace.csv", b), nil, &st)
		if err != nil {
			if len(spans) != 0 {
				t.Fatalf("error %v with %d spans", err, len(spans))
			}
			return
		}
		if st.Files != 1 || st.Spans != len(spans) || st.Spans > st.Rows || st.Spans+st.BadRows < st.Rows {
			t.Fatalf("stats %+v for %d spans", st, len(spans))
		}
		if len(probs) > 4 {
			t.Fatalf("%d problems reported, at most 3 rows and a total", len(probs))
		}
		for i, s := range spans {
			if s.TraceID.IsZero() || s.SpanID.IsZero() || s.Start <= 0 || s.End < s.Start || s.Pod == "" {
				t.Fatalf("span %d kept: %+v", i, s)
			}
		}
	})
}

// FuzzReadMetricFile: no metric CSV may panic the reader; kept rows have a
// time, a pod and one value (or NaN) per metric column.
func FuzzReadMetricFile(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, probs, err := ReadMetricFile(fuzzFile(t, dir, "pod_metric.csv", b))
		if err != nil {
			return
		}
		if len(probs) > 4 {
			t.Fatalf("%d problems reported", len(probs))
		}
		for i, r := range rows {
			if r.Pod == "" || r.Time.Unix() <= 0 || len(r.Values) != len(MetricColumns) {
				t.Fatalf("row %d kept: %+v", i, r)
			}
		}
	})
}

// FuzzReadFaults: no fault list may panic the reader; kept faults have a pod
// and come sorted by time.
func FuzzReadFaults(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		faults, _, err := ReadFaults(fuzzFile(t, dir, "2023-01-29-fault_list.json", b))
		if err != nil {
			return
		}
		for i, ft := range faults {
			if ft.Pod == "" || (i > 0 && ft.Time.Before(faults[i-1].Time)) {
				t.Fatalf("fault %d kept: %+v", i, ft)
			}
		}
	})
}

// TestWriteFuzzSeeds rewrites testdata/fuzz from the dataset samples in
// testdata/dataset and testdata/broken (MESHLENS_WRITE_FUZZ_SEEDS=1).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MESHLENS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set MESHLENS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for target, glob := range map[string]string{
		"FuzzReadTraceFile":  "testdata/*/*/trace/*.csv",
		"FuzzReadMetricFile": "testdata/*/*/metric/*.csv",
		"FuzzReadFaults":     "testdata/*/*/*.json",
	} {
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no files (%v)", glob, err)
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// testdata/<set>/<day>/.../<file> -> <set>-<file>
			name := strings.SplitN(filepath.ToSlash(p), "/", 3)[1] + "-" + strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
