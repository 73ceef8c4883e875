package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"syscall"
	"time"
)

func init() {
	register("loadgen", "load generators for the soak test (loadgen remote-write | otlp | api | watch | chat)", runLoadgen)
}

func runLoadgen(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("loadgen: want remote-write, otlp, api, watch or chat")
	}
	switch args[0] {
	case "remote-write":
		return loadgenRemoteWrite(ctx, args[1:])
	case "otlp":
		return loadgenOTLP(ctx, args[1:])
	case "api":
		return loadgenAPI(ctx, args[1:])
	case "watch":
		return loadgenWatch(ctx, args[1:])
	case "chat":
		return loadgenChat(ctx, args[1:])
	}
	return fmt.Errorf("loadgen: unknown %q", args[0])
}

// pacer spaces sends evenly at rate per second (0: as fast as possible). A
// sender that falls behind does not burst to catch up; the achieved rate is
// what gets reported.
type pacer struct {
	every time.Duration
	next  time.Time
}

func newPacer(rate float64) *pacer {
	p := &pacer{next: time.Now()}
	if rate > 0 {
		p.every = time.Duration(float64(time.Second) / rate)
	}
	return p
}

func (p *pacer) wait(ctx context.Context) {
	if p.every == 0 {
		return
	}
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	} else if -d > time.Second {
		p.next = now
	}
	p.next = p.next.Add(p.every)
}

// quantiles summarises latencies in ms.
func quantiles(lat []float64) (p50, p99, maxv float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return q(0.5), q(0.99), lat[len(lat)-1]
}

// cpuSeconds is this process' user+system CPU so far: the soak reports what
// the generators cost next to what the server did.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return math.Round((float64(ru.Utime.Nano()+ru.Stime.Nano())/1e9)*10) / 10
}

func readToken(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", file, err)
	}
	return string(bytes.TrimSpace(b)), nil
}
