// Package detect runs streaming anomaly detectors on each closed bucket of the
// service graph, groups anomalies into incidents and ranks their likely root
// causes. It runs live (hooked on graph.OnBucketClose) and in virtual time
// (evaluation harnesses feed snapshots themselves).
package detect

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Thresholds tune the detectors. In an Override a zero field inherits the
// default, so only the fields set in YAML change.
type Thresholds struct {
	// Latency: robust z-score of log latency against the window's median/MAD.
	LatencyZ        float64 `yaml:"latencyZ"`        // default 4
	LatencyMinRatio float64 `yaml:"latencyMinRatio"` // observed/baseline at least this; default 1.5
	LatencyMinCount uint64  `yaml:"latencyMinCount"` // samples in a bucket for p50/p95 (p99: 5x); default 20
	CusumK          float64 `yaml:"cusumK"`          // slack per bucket in z units; default 1
	CusumH          float64 `yaml:"cusumH"`          // decision level; default 12
	// Errors: binomial tail against the baseline ratio.
	ErrorP          float64 `yaml:"errorP"`          // p-value to call a bucket hot; default 1e-6
	ErrorMinDelta   float64 `yaml:"errorMinDelta"`   // absolute ratio increase at least; default 0.02
	ErrorMinErrors  uint64  `yaml:"errorMinErrors"`  // default 3
	MinRequests     uint64  `yaml:"minRequests"`     // per bucket for error / mTLS tests; default 10
	TrafficP        float64 `yaml:"trafficP"`        // Poisson two-sided p-value; default 1e-6
	TrafficZ        float64 `yaml:"trafficZ"`        // robust z on request counts too (overdispersion); default 5
	TrafficMinRate  float64 `yaml:"trafficMinRate"`  // expected requests per bucket before drops count; default 10
	SurgeRatio      float64 `yaml:"surgeRatio"`      // default 3
	DropRatio       float64 `yaml:"dropRatio"`       // default 0.3
	PlaintextDelta  float64 `yaml:"plaintextDelta"`  // rise of plaintext share; default 0.2
	BadVersionRatio float64 `yaml:"badVersionRatio"` // p95 vs siblings; default 2
}

// Selector matches nodes; empty fields match anything, values are path.Match globs.
type Selector struct {
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	App       string `yaml:"app" json:"app,omitempty"`
	Workload  string `yaml:"workload" json:"workload,omitempty"`
	Service   string `yaml:"service" json:"service,omitempty"`
	Kind      string `yaml:"kind" json:"kind,omitempty"` // workload, database, external, ...
}

// Override applies thresholds to the nodes matching the selector (an edge
// takes the override of its destination).
type Override struct {
	Match      Selector   `yaml:"match"`
	Thresholds Thresholds `yaml:"thresholds"`
	Disabled   bool       `yaml:"disabled"` // no detection at all for these nodes
}

// Policy declares which callees a source may call. With Allow set, anything
// else is a violation; Deny always is.
type Policy struct {
	Name   string     `yaml:"name"`
	Source Selector   `yaml:"source"`
	Allow  []Selector `yaml:"allow"`
	Deny   []Selector `yaml:"deny"`
}

// Webhook is one alert receiver. The alert package delivers to it.
type Webhook struct {
	Name    string            `yaml:"name"`
	URL     string            `yaml:"url"`
	Format  string            `yaml:"format"` // alertmanager, slack, json
	Headers map[string]string `yaml:"headers"`
	// MinSeverity filters incidents: info, warning, critical. Default warning.
	MinSeverity string `yaml:"minSeverity"`
}

// AlertConfig tunes delivery.
type AlertConfig struct {
	Webhooks       []Webhook     `yaml:"webhooks"`
	RepeatInterval time.Duration `yaml:"repeatInterval"` // default 4h
	Timeout        time.Duration `yaml:"timeout"`        // per request; default 10s
	MaxRetries     int           `yaml:"maxRetries"`     // default 5
	QueueSize      int           `yaml:"queueSize"`      // per receiver; default 256
	ExternalURL    string        `yaml:"externalURL"`    // link back to meshlens in messages
}

// Config is the detect section of config.yaml.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Window of buckets the robust baselines use.
	BaselineBuckets int `yaml:"baselineBuckets"` // default 60
	MinHistory      int `yaml:"minHistory"`      // buckets before a subject is judged; default 24
	RefreshEvery    int `yaml:"refreshEvery"`    // buckets between median/MAD recomputations; default 3
	// Persistence: fire when K of the last M buckets are hot; resolve after
	// ResolveAfter cold buckets in a row.
	PersistK     int `yaml:"persistK"`     // default 2
	PersistM     int `yaml:"persistM"`     // default 3
	ResolveAfter int `yaml:"resolveAfter"` // default 3
	// AdaptAfter buckets of firing, the baseline accepts the new level.
	AdaptAfter int `yaml:"adaptAfter"` // default 90
	// LearningPeriod: edges seen during it form the learned baseline of edges.
	LearningPeriod time.Duration `yaml:"learningPeriod"` // default 1h
	// NewEdgeTTL: an unexpected edge is learned (and its anomaly resolved) after this.
	NewEdgeTTL time.Duration `yaml:"newEdgeTTL"` // default 1h
	// IdleForget: subjects without traffic this long are dropped (bounded memory).
	IdleForget  time.Duration `yaml:"idleForget"`  // default 1h
	MaxSubjects int           `yaml:"maxSubjects"` // default 200000
	MaxHistory  int           `yaml:"maxHistory"`  // resolved anomalies / incidents kept; default 2000
	// IncidentGap: anomalies resolved less than this ago still join incidents.
	IncidentGap time.Duration `yaml:"incidentGap"` // default 5m

	Thresholds Thresholds  `yaml:"thresholds"`
	Overrides  []Override  `yaml:"overrides"`
	Policies   []Policy    `yaml:"policies"`
	Alerts     AlertConfig `yaml:"alerts"`
	// Structure judges each service operation's calls and self time from
	// live traces (see Structure).
	Structure StructureConfig `yaml:"structure"`
	// Resources judges pods' CPU and memory from the metrics collector
	// (see PodResources).
	Resources ResourcesConfig `yaml:"resources"`
}

// DefaultThresholds are the built-in thresholds.
func DefaultThresholds() Thresholds {
	return Thresholds{
		LatencyZ: 4, LatencyMinRatio: 1.5, LatencyMinCount: 20, CusumK: 1, CusumH: 12,
		ErrorP: 1e-6, ErrorMinDelta: 0.02, ErrorMinErrors: 3, MinRequests: 10,
		TrafficP: 1e-6, TrafficZ: 5, TrafficMinRate: 10, SurgeRatio: 3, DropRatio: 0.3,
		PlaintextDelta: 0.2, BadVersionRatio: 2,
	}
}

// DefaultConfig returns sane defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:         true,
		BaselineBuckets: 60,
		MinHistory:      24,
		RefreshEvery:    3,
		PersistK:        2,
		PersistM:        3,
		ResolveAfter:    3,
		AdaptAfter:      90,
		LearningPeriod:  time.Hour,
		NewEdgeTTL:      time.Hour,
		IdleForget:      time.Hour,
		MaxSubjects:     200000,
		MaxHistory:      2000,
		IncidentGap:     5 * time.Minute,
		Thresholds:      DefaultThresholds(),
		Structure:       DefaultStructureConfig(),
		Resources:       DefaultResourcesConfig(),
		Alerts: AlertConfig{
			RepeatInterval: 4 * time.Hour,
			Timeout:        10 * time.Second,
			MaxRetries:     5,
			QueueSize:      256,
		},
	}
}

// merge returns t with the non-zero fields of o.
func (t Thresholds) merge(o Thresholds) Thresholds {
	f := func(dst *float64, v float64) {
		if v != 0 {
			*dst = v
		}
	}
	u := func(dst *uint64, v uint64) {
		if v != 0 {
			*dst = v
		}
	}
	f(&t.LatencyZ, o.LatencyZ)
	f(&t.LatencyMinRatio, o.LatencyMinRatio)
	u(&t.LatencyMinCount, o.LatencyMinCount)
	f(&t.CusumK, o.CusumK)
	f(&t.CusumH, o.CusumH)
	f(&t.ErrorP, o.ErrorP)
	f(&t.ErrorMinDelta, o.ErrorMinDelta)
	u(&t.ErrorMinErrors, o.ErrorMinErrors)
	u(&t.MinRequests, o.MinRequests)
	f(&t.TrafficP, o.TrafficP)
	f(&t.TrafficZ, o.TrafficZ)
	f(&t.TrafficMinRate, o.TrafficMinRate)
	f(&t.SurgeRatio, o.SurgeRatio)
	f(&t.DropRatio, o.DropRatio)
	f(&t.PlaintextDelta, o.PlaintextDelta)
	f(&t.BadVersionRatio, o.BadVersionRatio)
	return t
}

func (t Thresholds) validate(prefix string) []string {
	var p []string
	neg := func(name string, v float64) {
		if v < 0 {
			p = append(p, fmt.Sprintf("%s.%s: must be >= 0", prefix, name))
		}
	}
	prob := func(name string, v float64) {
		if v < 0 || v >= 1 {
			p = append(p, fmt.Sprintf("%s.%s: must be in [0, 1)", prefix, name))
		}
	}
	neg("latencyZ", t.LatencyZ)
	neg("latencyMinRatio", t.LatencyMinRatio)
	neg("cusumK", t.CusumK)
	neg("cusumH", t.CusumH)
	prob("errorP", t.ErrorP)
	prob("errorMinDelta", t.ErrorMinDelta)
	prob("trafficP", t.TrafficP)
	neg("trafficZ", t.TrafficZ)
	neg("trafficMinRate", t.TrafficMinRate)
	neg("surgeRatio", t.SurgeRatio)
	prob("dropRatio", t.DropRatio)
	prob("plaintextDelta", t.PlaintextDelta)
	neg("badVersionRatio", t.BadVersionRatio)
	return p
}

func (s Selector) validate(prefix string) []string {
	var p []string
	for name, v := range map[string]string{"namespace": s.Namespace, "app": s.App, "workload": s.Workload, "service": s.Service} {
		if _, err := path.Match(v, ""); err != nil {
			p = append(p, fmt.Sprintf("%s.%s: bad pattern %q: %v", prefix, name, v, err))
		}
	}
	if s.Kind != "" {
		if _, err := graph.ParseKind(s.Kind); err != nil {
			p = append(p, fmt.Sprintf("%s.kind: %v", prefix, err))
		}
	}
	return p
}

// Validate reports every problem as "key.path: message".
func (c Config) Validate() []string {
	var p []string
	pos := func(name string, v int) {
		if v <= 0 {
			p = append(p, name+": must be > 0")
		}
	}
	pos("baselineBuckets", c.BaselineBuckets)
	pos("minHistory", c.MinHistory)
	pos("refreshEvery", c.RefreshEvery)
	pos("persistK", c.PersistK)
	pos("persistM", c.PersistM)
	pos("resolveAfter", c.ResolveAfter)
	pos("adaptAfter", c.AdaptAfter)
	pos("maxSubjects", c.MaxSubjects)
	pos("maxHistory", c.MaxHistory)
	if c.PersistM > 16 {
		p = append(p, "persistM: must be <= 16")
	}
	if c.PersistK > c.PersistM {
		p = append(p, "persistK: must be <= persistM")
	}
	if c.BaselineBuckets > 1440 {
		p = append(p, "baselineBuckets: must be <= 1440")
	}
	if c.MinHistory > c.BaselineBuckets {
		p = append(p, "minHistory: must be <= baselineBuckets")
	}
	for name, d := range map[string]time.Duration{"learningPeriod": c.LearningPeriod, "newEdgeTTL": c.NewEdgeTTL, "idleForget": c.IdleForget, "incidentGap": c.IncidentGap} {
		if d < 0 {
			p = append(p, name+": must be >= 0")
		}
	}
	p = append(p, c.Thresholds.validate("thresholds")...)
	if c.Structure.Enabled {
		for _, s := range c.Structure.Validate() {
			p = append(p, "structure."+s)
		}
	}
	if c.Resources.Enabled {
		for _, s := range c.Resources.Validate() {
			p = append(p, "resources."+s)
		}
	}
	for i, o := range c.Overrides {
		pre := fmt.Sprintf("overrides[%d]", i)
		p = append(p, o.Match.validate(pre+".match")...)
		p = append(p, o.Thresholds.validate(pre+".thresholds")...)
	}
	for i, pol := range c.Policies {
		pre := fmt.Sprintf("policies[%d]", i)
		p = append(p, pol.Source.validate(pre+".source")...)
		if len(pol.Allow) == 0 && len(pol.Deny) == 0 {
			p = append(p, pre+": needs allow or deny")
		}
		for j, s := range pol.Allow {
			p = append(p, s.validate(fmt.Sprintf("%s.allow[%d]", pre, j))...)
		}
		for j, s := range pol.Deny {
			p = append(p, s.validate(fmt.Sprintf("%s.deny[%d]", pre, j))...)
		}
	}
	a := c.Alerts
	for i, w := range a.Webhooks {
		pre := fmt.Sprintf("alerts.webhooks[%d]", i)
		if w.Name == "" {
			p = append(p, pre+".name: required")
		}
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			p = append(p, pre+".url: must be an http(s) URL")
		}
		switch w.Format {
		case "", "alertmanager", "slack", "json":
		default:
			p = append(p, pre+".format: must be alertmanager, slack or json")
		}
		switch w.MinSeverity {
		case "", SeverityInfo, SeverityWarning, SeverityCritical:
		default:
			p = append(p, pre+".minSeverity: must be info, warning or critical")
		}
	}
	if a.RepeatInterval < 0 {
		p = append(p, "alerts.repeatInterval: must be >= 0")
	}
	if a.Timeout <= 0 && len(a.Webhooks) > 0 {
		p = append(p, "alerts.timeout: must be > 0")
	}
	if a.MaxRetries < 0 {
		p = append(p, "alerts.maxRetries: must be >= 0")
	}
	if a.QueueSize <= 0 && len(a.Webhooks) > 0 {
		p = append(p, "alerts.queueSize: must be > 0")
	}
	return p
}

// matches reports whether n matches the selector.
func (s Selector) matches(n graph.Node) bool {
	g := func(pat, v string) bool {
		if pat == "" {
			return true
		}
		ok, _ := path.Match(pat, v)
		return ok
	}
	app := n.App
	if app == "" {
		app = n.Name()
	}
	return g(s.Namespace, n.Namespace) && g(s.App, app) && g(s.Workload, n.Name()) &&
		g(s.Service, n.Service) && (s.Kind == "" || s.Kind == n.Kind.String())
}

// thresholdsFor resolves the thresholds of a node; ok is false when disabled.
func (c *Config) thresholdsFor(n graph.Node) (Thresholds, bool) {
	t := c.Thresholds
	for _, o := range c.Overrides {
		if o.Match.matches(n) {
			if o.Disabled {
				return t, false
			}
			t = t.merge(o.Thresholds)
		}
	}
	return t, true
}
