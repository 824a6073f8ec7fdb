package metrics

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Option configures Metrics.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	namespace     string
	buckets       []float64
	scrapeTimeout time.Duration
	labelLimit    int
	logger        *zap.Logger
}

// DefaultBuckets are the histogram buckets, in seconds, of the run
// duration and queue wait histograms: 5 ms to 10 minutes.
var DefaultBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// OtherLabel is the value a type or queue label takes once the label limit
// (WithLabelLimit) is reached. It cannot be a real type or queue name.
const OtherLabel = "(other)"

func defaultConfig() config {
	return config{
		namespace:     "scheduler",
		buckets:       slices.Clone(DefaultBuckets),
		scrapeTimeout: 5 * time.Second,
		labelLimit:    256,
		logger:        zap.NewNop(),
	}
}

func (c *config) validate() error {
	switch {
	case c.scrapeTimeout <= 0:
		return fmt.Errorf("metrics: scrape timeout %s, must be positive", c.scrapeTimeout)
	case c.labelLimit < 1:
		return fmt.Errorf("metrics: label limit %d, must be at least 1", c.labelLimit)
	case c.logger == nil:
		return fmt.Errorf("metrics: logger is nil")
	case len(c.buckets) == 0:
		return fmt.Errorf("metrics: no histogram buckets")
	}
	for i := 1; i < len(c.buckets); i++ {
		if c.buckets[i] <= c.buckets[i-1] {
			return fmt.Errorf("metrics: histogram buckets must increase, got %v", c.buckets)
		}
	}
	return nil
}

// WithNamespace sets the prefix of every metric name. An empty namespace
// leaves the names unprefixed. Defaults to "scheduler".
func WithNamespace(ns string) Option {
	return optionFunc(func(c *config) { c.namespace = ns })
}

// WithBuckets sets the upper bounds, in seconds and increasing, of the run
// duration and queue wait histograms. Defaults to DefaultBuckets.
func WithBuckets(b []float64) Option {
	return optionFunc(func(c *config) { c.buckets = append([]float64(nil), b...) })
}

// WithScrapeTimeout bounds the backend reads (queue depth, tasks by state,
// workers) of one scrape; what has not answered by then is left out of that
// scrape and logged. Defaults to 5 seconds.
func WithScrapeTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.scrapeTimeout = d })
}

// WithLabelLimit bounds how many distinct task types, and separately how
// many distinct queues, become label values. Types and queues come from
// submitters (for instance over HTTP), so without a bound a careless or
// hostile client could create any number of time series. Once the limit is
// reached, new names are counted under OtherLabel. Defaults to 256.
func WithLabelLimit(n int) Option {
	return optionFunc(func(c *config) { c.labelLimit = n })
}

// WithLogger sets the logger for scrape failures. Defaults to a no-op
// logger.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}
