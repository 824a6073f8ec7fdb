package metrics

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// scrapeCollector reads the backends when Prometheus scrapes, never on a
// task's path, each read bounded by the scrape timeout.
type scrapeCollector struct {
	m          *Metrics
	depth      *prometheus.Desc
	tasks      *prometheus.Desc
	workers    *prometheus.Desc
	beatAge    *prometheus.Desc
	reconnects *prometheus.Desc
	lastTick   *prometheus.Desc
	nextTick   *prometheus.Desc
}

// maxParallelDepth bounds the concurrent queue depth reads of a scrape.
const maxParallelDepth = 8

func newScrapeCollector(m *Metrics) *scrapeCollector {
	name := func(n string) string { return prometheus.BuildFQName(m.cfg.namespace, "", n) }
	return &scrapeCollector{
		m:          m,
		depth:      prometheus.NewDesc(name("queue_depth"), "Messages ready for delivery in a queue, from the broker.", []string{"queue"}, nil),
		tasks:      prometheus.NewDesc(name("tasks"), "Stored tasks by state, from the store.", []string{"state"}, nil),
		workers:    prometheus.NewDesc(name("workers"), "Live worker nodes, from their heartbeats in the store.", nil, nil),
		beatAge:    prometheus.NewDesc(name("worker_heartbeat_age_seconds"), "Seconds since each live worker's last heartbeat.", []string{"worker"}, nil),
		reconnects: prometheus.NewDesc(name("broker_reconnects_total"), "Times the broker re-established its connection.", nil, nil),
		lastTick:   prometheus.NewDesc(name("periodic_last_tick_timestamp_seconds"), "The latest tick of each periodic schedule known to be submitted (by any node), as a Unix time.", []string{"schedule"}, nil),
		nextTick:   prometheus.NewDesc(name("periodic_next_tick_timestamp_seconds"), "The next tick of each periodic schedule, as a Unix time.", []string{"schedule"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.tasks, c.workers, c.beatAge, c.reconnects, c.lastTick, c.nextTick} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A backend read that fails or
// does not answer within the scrape timeout leaves its metrics out of this
// scrape and is logged; the rest are still reported.
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.mu.Lock()
	brokers := slices.Clone(m.brokers)
	watched := m.watched
	m.mu.Unlock()
	if len(brokers) > 0 {
		var n uint64
		for _, b := range brokers {
			n += b.Reconnects()
		}
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(n))
	}
	s := m.sched.Load()
	if s == nil {
		return
	}
	for _, p := range s.Schedules() {
		if !p.Last.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastTick, prometheus.GaugeValue, float64(p.Last.UnixNano())/1e9, p.Name)
		}
		if !p.Next.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.nextTick, prometheus.GaugeValue, float64(p.Next.UnixNano())/1e9, p.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.scrapeTimeout)
	defer cancel()
	var (
		wg      sync.WaitGroup
		counts  map[scheduler.State]int64
		workers []scheduler.WorkerInfo
		cErr    error
		wErr    error
	)
	wg.Go(func() { counts, cErr = s.Counts(ctx) })
	workers, wErr = s.Workers(ctx)
	wg.Wait()

	if c.report(cErr, "tasks by state") {
		for _, st := range scheduler.States {
			ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
	}
	queues := slices.Clone(watched)
	queues = append(queues, m.queues.values()...)
	if c.report(wErr, "workers") {
		now := m.now()
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(len(workers)))
		for _, w := range workers {
			age := max(now.Sub(w.LastBeat).Seconds(), 0)
			ch <- prometheus.MustNewConstMetric(c.beatAge, prometheus.GaugeValue, age, w.ID)
			queues = append(queues, w.Queues...)
		}
	}
	slices.Sort(queues)
	queues = slices.Compact(queues)

	sem := make(chan struct{}, maxParallelDepth)
	for _, q := range queues {
		if q == OtherLabel {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n, err := s.QueueDepth(ctx, q)
			if c.report(err, "queue depth", zap.String("queue", q)) {
				ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), q)
			}
		})
	}
	wg.Wait()
}

// report logs err, if any, and reports whether the read succeeded.
func (c *scrapeCollector) report(err error, what string, fields ...zap.Field) bool {
	if err == nil {
		return true
	}
	c.m.cfg.logger.Error("metrics scrape: reading "+what+" failed; left out of this scrape", append(fields, zap.Error(err))...)
	return false
}
