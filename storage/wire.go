package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// WireOptions is what Wire needs from the app.
type WireOptions struct {
	Config     Config
	DataDir    string // top-level dataDir, used when Config.DataDir is empty
	Graph      *graph.Graph
	Detect     *detect.Engine // nil when detection is off
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time // default time.Now
}

// Wired is storage hooked into a running meshlens.
type Wired struct {
	Store    Store
	Recorder *Recorder
	Replay   *Replay
	API      *API
	// Assistant adapts the store to the assistant's Proposals, Sessions and Audit options.
	Assistant *AssistantStores
	Restored  Restored
	started   bool
}

// Wire opens the store, restores the graph's recent window and the
// detector's baselines into them, and hooks the recorder onto both. Call it
// after building the graph and engine and before anything ingests or the
// graph starts; pass Wired.Replay to the web server as its GraphSource and
// mount Wired.API. Wired.Start/Shutdown run the recorder and close the store.
func Wire(ctx context.Context, o WireOptions) (*Wired, error) {
	cfg := o.Config
	if cfg.DataDir == "" {
		cfg.DataDir = o.DataDir
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := Open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	var imp StateImporter
	var exp StateSource
	if o.Detect != nil {
		imp, exp = o.Detect, o.Detect
	}
	restored, err := Restore(ctx, st, o.Graph, imp, o.Now())
	if err != nil {
		st.Close()
		return nil, err
	}
	if restored.Buckets > 0 || restored.Baseline {
		log.Info("storage restored", "buckets", restored.Buckets, "upTo", restored.UpTo, "baselines", restored.Baseline)
	}
	rec, err := NewRecorder(st, cfg, o.Graph, exp, log, o.Registerer)
	if err != nil {
		st.Close()
		return nil, err
	}
	rec.SkipUpTo(restored.UpTo)
	if o.Detect != nil {
		rec.Attach(o.Graph, o.Detect)
	} else {
		rec.Attach(o.Graph, nil)
	}
	replay := NewReplay(o.Graph, st, cfg.Retention)
	return &Wired{Store: st, Recorder: rec, Replay: replay, API: NewAPI(st, replay, rec), Assistant: ForAssistant(st), Restored: restored}, nil
}

// Start runs the recorder.
func (w *Wired) Start(ctx context.Context) error {
	if err := w.Recorder.Start(ctx); err != nil {
		return err
	}
	w.started = true
	return nil
}

// Shutdown flushes everything queued and closes the store; safe twice.
// Stop it after the graph and the engine so their last changes are in.
func (w *Wired) Shutdown(ctx context.Context) error {
	if w.Store == nil {
		return nil
	}
	err := w.Recorder.Shutdown(ctx)
	if cerr := w.Store.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close storage: %w", cerr))
	}
	w.Store = nil
	return err
}

// Ready is for web.Options.Ready: not ready while writes fail.
func (w *Wired) Ready() error { return w.Recorder.Ready() }

// Mount registers the storage routes (diff, history, audit, status).
func (w *Wired) Mount(handle func(pattern string, h http.Handler)) { w.API.Register(handle) }
