// Package storage keeps meshlens' history and state: downsampled edge
// statistics, topology snapshots, anomalies and incidents with their state
// changes, detector baselines, proposals and approvals, the audit log and
// chat sessions. SQLite in the data directory is the default; PostgreSQL
// implements the same Store for several replicas sharing state.
package storage

import (
	"fmt"
	"time"
)

// Drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Tier widths of edge history: raw graph buckets, minutes, hours.
const (
	Res10s = 10 * time.Second
	Res1m  = time.Minute
	Res1h  = time.Hour
)

// Retention says how long each resolution of edge history is kept.
type Retention struct {
	Raw    time.Duration `yaml:"raw"`    // 10 s buckets
	Minute time.Duration `yaml:"minute"` // 1 min buckets
	Hour   time.Duration `yaml:"hour"`   // 1 h buckets
}

// Config is the `storage:` section.
type Config struct {
	Driver string `yaml:"driver"` // sqlite (default) or postgres
	// DataDir holds the SQLite database; empty means the top-level dataDir.
	DataDir string `yaml:"dataDir"`
	// DSNEnv names the environment variable holding the PostgreSQL DSN, so
	// credentials never sit in the config file.
	DSNEnv    string    `yaml:"dsnEnv"`
	Retention Retention `yaml:"retention"`
	// BatchSize caps rows per write transaction of edge history.
	BatchSize int `yaml:"batchSize"`
	// FlushInterval is the longest edge history waits in memory before it is
	// written; anomalies, incidents and state changes are written at once.
	FlushInterval time.Duration `yaml:"flushInterval"`
	// StateInterval is how often detector baselines are saved.
	StateInterval time.Duration `yaml:"stateInterval"`
	// MaxPending bounds edge-history rows held in memory while the database
	// refuses writes (disk full, read-only); older rows are dropped first.
	MaxPending int `yaml:"maxPending"`
}

// DefaultConfig is the embedded SQLite store with 3 h of 10 s buckets, 2 days
// of minutes and 14 days of hours (about 0.75 MiB per busy edge; see
// `meshlens bench-storage`).
func DefaultConfig() Config {
	return Config{
		Driver:        DriverSQLite,
		DSNEnv:        "MESHLENS_POSTGRES_DSN",
		Retention:     Retention{Raw: 3 * time.Hour, Minute: 48 * time.Hour, Hour: 14 * 24 * time.Hour},
		BatchSize:     5000,
		FlushInterval: 10 * time.Second,
		StateInterval: time.Minute,
		MaxPending:    1_000_000,
	}
}

// Validate reports every problem as "key.path: message" relative to the section.
func (c Config) Validate() []string {
	var p []string
	add := func(k, format string, a ...any) { p = append(p, k+": "+fmt.Sprintf(format, a...)) }
	switch c.Driver {
	case DriverSQLite, "":
	case DriverPostgres:
		if c.DSNEnv == "" {
			add("dsnEnv", "must name an environment variable holding the PostgreSQL DSN")
		}
	default:
		add("driver", "must be sqlite or postgres, not %q", c.Driver)
	}
	r := c.Retention
	if r.Raw < Res1m {
		add("retention.raw", "must be at least 1m (got %s)", r.Raw)
	}
	if r.Minute < Res1h {
		add("retention.minute", "must be at least 1h (got %s)", r.Minute)
	}
	if r.Hour < Res1h {
		add("retention.hour", "must be at least 1h (got %s)", r.Hour)
	}
	if r.Minute < r.Raw {
		add("retention.minute", "must be >= retention.raw (%s)", r.Raw)
	}
	if r.Hour < r.Minute {
		add("retention.hour", "must be >= retention.minute (%s)", r.Minute)
	}
	if c.BatchSize <= 0 {
		add("batchSize", "must be > 0")
	}
	if c.FlushInterval <= 0 {
		add("flushInterval", "must be > 0")
	}
	if c.StateInterval <= 0 {
		add("stateInterval", "must be > 0")
	}
	if c.MaxPending <= 0 {
		add("maxPending", "must be > 0")
	}
	return p
}

// retentionOf is how long rows of resolution res are kept.
func (r Retention) of(res time.Duration) time.Duration {
	switch res {
	case Res10s:
		return r.Raw
	case Res1m:
		return r.Minute
	}
	return r.Hour
}
