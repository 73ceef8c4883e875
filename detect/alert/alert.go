// Package alert delivers detect incidents to webhook receivers:
// Alertmanager-compatible JSON, Slack incoming webhooks and generic JSON.
// One notification per incident state change (grouping per incident), repeats
// while firing, resolved notifications, retries with backoff, and a bounded
// queue per receiver so a slow or failing receiver never blocks detection.
package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/detect"
)

type job struct {
	inc    detect.Incident
	status string // firing, resolved
}

type receiver struct {
	cfg detect.Webhook
	q   chan job
}

type sent struct {
	at  time.Time
	key string // what was last sent: state + top root cause + severity
	inc detect.Incident
}

// Notifier fans incident changes out to the configured webhooks.
type Notifier struct {
	cfg    detect.AlertConfig
	log    *slog.Logger
	client *http.Client
	rcv    []*receiver
	// backoff is the first retry delay; doubled per attempt (capped at 1 min).
	backoff time.Duration
	now     func() time.Time

	mu    sync.Mutex
	state map[string]*sent

	delivered, failed, dropped *prometheus.CounterVec

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
}

// New builds a notifier; it starts nothing.
func New(cfg detect.AlertConfig, log *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	n := &Notifier{
		cfg: cfg, log: log, client: &http.Client{Timeout: cfg.Timeout},
		backoff: time.Second, now: time.Now, state: map[string]*sent{},
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_alert_notifications_total", Help: "Webhook notifications delivered."}, []string{"receiver"}),
		failed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_alert_failures_total", Help: "Webhook notifications given up after retries."}, []string{"receiver"}),
		dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_alert_dropped_total", Help: "Notifications dropped because the receiver's queue was full."}, []string{"receiver"}),
	}
	for _, w := range cfg.Webhooks {
		if w.Format == "" {
			w.Format = "json"
		}
		n.rcv = append(n.rcv, &receiver{cfg: w, q: make(chan job, cfg.QueueSize)})
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{n.delivered, n.failed, n.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register alert metrics: %w", err)
			}
		}
	}
	return n, nil
}

// Handle takes an engine change (pass it to Engine.Subscribe). It never blocks.
func (n *Notifier) Handle(c detect.Change) {
	if c.Incident == nil || c.Incident.MergedInto != "" {
		return
	}
	in := *c.Incident
	top := ""
	if len(in.RootCauses) > 0 {
		top = in.RootCauses[0].Node.ID
	}
	key := in.State + "|" + top + "|" + in.Severity
	n.mu.Lock()
	prev := n.state[in.ID]
	if prev != nil && prev.key == key {
		prev.inc = in
		n.mu.Unlock()
		return // dedupe: nothing a receiver would show has changed
	}
	if prev == nil && in.State == detect.StateResolved {
		n.mu.Unlock()
		return // never announced: no resolve either
	}
	n.state[in.ID] = &sent{at: n.now(), key: key, inc: in}
	if in.State == detect.StateResolved {
		delete(n.state, in.ID)
	}
	n.mu.Unlock()
	n.enqueue(in)
}

func (n *Notifier) enqueue(in detect.Incident) {
	status := "firing"
	if in.State == detect.StateResolved {
		status = "resolved"
	}
	for _, r := range n.rcv {
		if status == "firing" && !detect.SeverityAtLeast(in.Severity, r.cfg.MinSeverity) {
			continue
		}
		select {
		case r.q <- job{inc: in, status: status}:
		default:
			n.dropped.WithLabelValues(r.cfg.Name).Inc()
			n.log.Warn("alert queue full, notification dropped", "receiver", r.cfg.Name, "incident", in.ID)
		}
	}
}

// Start runs one sender per receiver and the repeat ticker.
func (n *Notifier) Start(ctx context.Context) error {
	n.startOnce.Do(func() {
		ctx, n.cancel = context.WithCancel(ctx)
		for _, r := range n.rcv {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.run(ctx, r)
			}()
		}
		if n.cfg.RepeatInterval > 0 {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				t := time.NewTicker(min(n.cfg.RepeatInterval, time.Minute))
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						n.repeat()
					}
				}
			}()
		}
	})
	return nil
}

// repeat re-sends incidents still firing after the repeat interval.
func (n *Notifier) repeat() {
	now := n.now()
	var due []detect.Incident
	n.mu.Lock()
	for _, s := range n.state {
		if s.inc.State == detect.StateFiring && now.Sub(s.at) >= n.cfg.RepeatInterval {
			s.at = now
			due = append(due, s.inc)
		}
	}
	n.mu.Unlock()
	for _, in := range due {
		n.enqueue(in)
	}
}

// Shutdown stops the senders and waits for them; safe to call twice.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
	})
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("alert shutdown: %w", ctx.Err())
	}
}

func (n *Notifier) run(ctx context.Context, r *receiver) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.q:
			n.deliver(ctx, r, j)
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, r *receiver, j job) {
	body, err := Render(r.cfg.Format, r.cfg.Name, n.cfg.ExternalURL, j.inc, j.status)
	if err != nil {
		n.log.Error("render alert", "receiver", r.cfg.Name, "err", err)
		return
	}
	wait := n.backoff
	for attempt := 0; ; attempt++ {
		err = n.post(ctx, r, body)
		if err == nil {
			n.delivered.WithLabelValues(r.cfg.Name).Inc()
			return
		}
		if attempt >= n.cfg.MaxRetries {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
	n.failed.WithLabelValues(r.cfg.Name).Inc()
	n.log.Warn("alert delivery failed", "receiver", r.cfg.Name, "incident", j.inc.ID, "err", err)
}

func (n *Notifier) post(ctx context.Context, r *receiver, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", r.cfg.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range r.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", r.cfg.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s: HTTP %d", r.cfg.Name, resp.StatusCode)
	}
	return nil
}

// amAlert is one alert of Alertmanager's webhook payload (version 4).
type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

func describe(in detect.Incident) string {
	var b strings.Builder
	for i, rc := range in.RootCauses {
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "%d. %s (score %.2f): %s\n", i+1, rc.Node.Name, rc.Score, rc.Explanation)
	}
	return strings.TrimSpace(b.String())
}

// Render builds the request body of one notification.
func Render(format, receiver, externalURL string, in detect.Incident, status string) ([]byte, error) {
	link := ""
	if externalURL != "" {
		link = strings.TrimRight(externalURL, "/") + "/api/v1/incidents/" + in.ID
	}
	switch format {
	case "alertmanager":
		labels := map[string]string{"alertname": "MeshlensIncident", "incident": in.ID, "severity": in.Severity}
		if len(in.RootCauses) > 0 {
			rc := in.RootCauses[0].Node
			labels["root_cause"] = rc.Name
			if rc.Namespace != "" {
				labels["namespace"] = rc.Namespace
			}
		}
		ann := map[string]string{"summary": in.Title, "description": describe(in)}
		a := amAlert{Status: status, Labels: labels, Annotations: ann, StartsAt: in.Start, GeneratorURL: link}
		if in.ResolvedAt != nil {
			a.EndsAt = *in.ResolvedAt
		}
		h := fnv.New64a()
		h.Write([]byte(in.ID))
		a.Fingerprint = fmt.Sprintf("%016x", h.Sum64())
		return json.Marshal(amMessage{Version: "4", GroupKey: "{}:{incident=\"" + in.ID + "\"}", Status: status, Receiver: receiver,
			GroupLabels: map[string]string{"incident": in.ID}, CommonLabels: labels, CommonAnnotations: ann, ExternalURL: externalURL, Alerts: []amAlert{a}})
	case "slack":
		icon := ":red_circle:"
		if status == "resolved" {
			icon = ":large_green_circle:"
		}
		text := fmt.Sprintf("%s *[%s] %s* (%s)\n%s", icon, strings.ToUpper(status), in.Title, in.Severity, describe(in))
		if link != "" {
			text += "\n<" + link + "|details>"
		}
		return json.Marshal(map[string]string{"text": text})
	case "json", "":
		return json.Marshal(map[string]any{"status": status, "incident": in})
	}
	return nil, fmt.Errorf("unknown webhook format %q", format)
}
