// Package metrics ingests Prometheus-dialect request metrics (Istio sidecars,
// waypoints and ztunnel, Linkerd, plain Envoy) by scraping targets, by
// accepting Prometheus remote-write and by accepting OTLP metrics, and turns
// them into graph observations: cumulative counters and histograms become
// per-interval deltas, each tagged with the vantage point that reported them.
package metrics

import (
	"fmt"
	"net/url"
	"time"
)

// Config is the metrics collector's section.
type Config struct {
	// Targets are scraped for Prometheus text / OpenMetrics exposition.
	Targets []Target `yaml:"targets"`
	// MaxBodyBytes caps a scrape body or a pushed request, after decompression.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxLabelLength caps label values taken into node identities; longer values are cut.
	MaxLabelLength int `yaml:"maxLabelLength"`
	// MaxSeries caps the series whose last value is held; new series past it are dropped.
	MaxSeries int `yaml:"maxSeries"`
	// SeriesTTL forgets a series not seen for this long.
	SeriesTTL time.Duration `yaml:"seriesTtl"`
}

// Target is one scraped endpoint.
type Target struct {
	Name     string        `yaml:"name"`
	URL      string        `yaml:"url"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// Labels are added to every series of the target, e.g. {app: ztunnel} to mark
	// an ambient ztunnel, or {service: frontend, namespace: shop} to name the
	// proxy that plain Envoy stats come from.
	Labels map[string]string `yaml:"labels"`
}

// Defaults.
const (
	DefaultMaxBodyBytes   = 16 << 20
	DefaultMaxLabelLength = 256
	DefaultMaxSeries      = 1 << 20
	DefaultSeriesTTL      = 10 * time.Minute
	DefaultInterval       = 15 * time.Second
	DefaultTimeout        = 10 * time.Second
)

// DefaultConfig returns the defaults: no targets, 16 MiB bodies.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:   DefaultMaxBodyBytes,
		MaxLabelLength: DefaultMaxLabelLength,
		MaxSeries:      DefaultMaxSeries,
		SeriesTTL:      DefaultSeriesTTL,
	}
}

// withDefaults fills zero values of targets (interval, timeout).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxLabelLength == 0 {
		c.MaxLabelLength = d.MaxLabelLength
	}
	if c.MaxSeries == 0 {
		c.MaxSeries = d.MaxSeries
	}
	if c.SeriesTTL == 0 {
		c.SeriesTTL = d.SeriesTTL
	}
	ts := make([]Target, len(c.Targets))
	for i, t := range c.Targets {
		if t.Interval == 0 {
			t.Interval = DefaultInterval
		}
		if t.Timeout == 0 {
			t.Timeout = min(DefaultTimeout, t.Interval)
		}
		if t.Name == "" {
			t.Name = t.URL
		}
		ts[i] = t
	}
	c.Targets = ts
	return c
}

// Validate reports every problem as "key.path: message" relative to the section.
func (c Config) Validate() []string {
	var errs []string
	if c.MaxBodyBytes < 0 {
		errs = append(errs, "maxBodyBytes: must be > 0")
	}
	if c.MaxLabelLength < 0 {
		errs = append(errs, "maxLabelLength: must be > 0")
	}
	if c.MaxSeries < 0 {
		errs = append(errs, "maxSeries: must be > 0")
	}
	if c.SeriesTTL < 0 {
		errs = append(errs, "seriesTtl: must be > 0")
	}
	names := map[string]int{}
	for i, t := range c.Targets {
		p := fmt.Sprintf("targets[%d]", i)
		u, err := url.Parse(t.URL)
		switch {
		case t.URL == "":
			errs = append(errs, p+".url: required")
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s.url: %v", p, err))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Sprintf("%s.url: scheme %q: want http or https", p, u.Scheme))
		case u.Host == "":
			errs = append(errs, p+".url: no host")
		}
		if t.Interval < 0 {
			errs = append(errs, p+".interval: must be > 0")
		}
		if t.Timeout < 0 {
			errs = append(errs, p+".timeout: must be > 0")
		}
		if t.Interval > 0 && t.Timeout > t.Interval {
			errs = append(errs, fmt.Sprintf("%s.timeout: %s exceeds the interval %s", p, t.Timeout, t.Interval))
		}
		name := t.Name
		if name == "" {
			name = t.URL
		}
		if j, dup := names[name]; dup && name != "" {
			errs = append(errs, fmt.Sprintf("%s.name: %q already used by targets[%d]", p, name, j))
		} else {
			names[name] = i
		}
	}
	return errs
}
