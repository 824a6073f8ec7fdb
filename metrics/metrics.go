package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dtsched/scheduler"
)

// Metrics turns a Scheduler's task events and backend state into
// Prometheus metrics. It is a scheduler.Observer: pass it to scheduler.New
// with scheduler.WithObserver, then call Watch with the Scheduler so that
// scrapes can read the backends. All methods are safe for concurrent use.
//
// Counters and histograms count what happened in this process (the
// submissions it made, the attempts its workers ran); sum them over
// processes in queries. Gauges read from the backends (queue depth, tasks
// by state, workers) describe the whole cluster.
type Metrics struct {
	cfg config
	now func() time.Time

	submitted    *prometheus.CounterVec
	finished     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	dead         *prometheus.CounterVec
	runDuration  *prometheus.HistogramVec
	queueWait    *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	storeErrors  *prometheus.CounterVec
	brokerErrors *prometheus.CounterVec
	ticks        *prometheus.CounterVec

	types  *labelSet
	queues *labelSet

	sched   atomic.Pointer[scheduler.Scheduler]
	mu      sync.Mutex
	watched []string      // queues given to Watch
	brokers []reconnecter // instrumented brokers that count reconnects

	scrape *scrapeCollector
}

var (
	_ scheduler.Observer     = (*Metrics)(nil)
	_ scheduler.TickObserver = (*Metrics)(nil)
)

// reconnecter is implemented by brokers that count their reconnections,
// such as the RabbitMQ broker.
type reconnecter interface{ Reconnects() uint64 }

// New creates the metrics and registers them with reg. It fails if reg is
// nil, an option is invalid, or a metric of the same name is already
// registered there (then nothing stays registered).
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: registerer is nil")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("metrics: nil option")
		}
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ns := cfg.namespace
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: cfg.buckets}, labels)
	}
	m := &Metrics{
		cfg:         cfg,
		now:         time.Now,
		submitted:   counter("tasks_submitted_total", "Tasks submitted by this process.", "type", "queue", "priority"),
		finished:    counter("tasks_finished_total", "Tasks that reached a final state (succeeded, dead, canceled), as seen by this process.", "type", "state"),
		retries:     counter("task_retries_total", "Failed attempts scheduled to run again, plus dead or canceled tasks retried by request.", "type"),
		dead:        counter("tasks_dead_total", "Tasks whose last attempt failed.", "type"),
		runDuration: histogram("task_run_duration_seconds", "How long handlers ran, by outcome of the attempt (succeeded, failed, snoozed, aborted).", "type", "outcome"),
		queueWait:   histogram("task_queue_wait_seconds", "How long tasks waited from submission (or their run-at time) to the start of an attempt.", "queue"),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "tasks_in_flight",
			Help: "Attempts running now in this process's workers."}, []string{"type"}),
		storeErrors:  counter("store_errors_total", "Store calls that failed for another reason than a definite answer (not found, duplicate, ...).", "operation"),
		brokerErrors: counter("broker_errors_total", "Broker calls that failed.", "operation"),
		ticks:        counter("periodic_ticks_total", "Ticks of periodic schedules seen by this process, by outcome: fired (submitted here), taken (already submitted by another node), skipped (by the catch-up policy), failed (store unreachable).", "schedule", "outcome"),
		types:        newLabelSet(cfg.labelLimit),
		queues:       newLabelSet(cfg.labelLimit),
	}
	m.scrape = newScrapeCollector(m)
	cs := []prometheus.Collector{m.submitted, m.finished, m.retries, m.dead, m.runDuration, m.queueWait, m.inFlight, m.storeErrors, m.brokerErrors, m.ticks, m.scrape}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, r := range cs[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Watch gives the metrics the Scheduler whose backends scrapes read: tasks
// by state, live workers and their heartbeat age, the in-flight count, and
// the depth of queues. The queues measured are those given here (the
// default queue when none is), those live workers take from, and those
// this process submitted to. Call it once, after scheduler.New; a second
// call fails.
func (m *Metrics) Watch(s *scheduler.Scheduler, queues ...string) error {
	if s == nil {
		return errors.New("metrics: scheduler is nil")
	}
	if len(queues) == 0 {
		queues = []string{scheduler.DefaultQueue}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sched.Load() != nil {
		return errors.New("metrics: already watching a scheduler")
	}
	m.watched = slices.Clone(queues)
	m.sched.Store(s)
	return nil
}

// Observe implements scheduler.Observer. It only updates in-memory
// counters: it never blocks.
func (m *Metrics) Observe(e scheduler.Event) {
	t := e.Task
	if t == nil {
		return
	}
	typ := m.types.get(t.Type)
	switch e.Kind {
	case scheduler.EventSubmitted:
		m.submitted.WithLabelValues(typ, m.queues.get(t.Queue), strconv.Itoa(int(t.Priority))).Inc()
	case scheduler.EventStarted:
		m.queueWait.WithLabelValues(m.queues.get(t.Queue)).Observe(e.Wait.Seconds())
		m.inFlight.WithLabelValues(typ).Inc()
	case scheduler.EventSucceeded:
		m.attemptEnded(typ, "succeeded", e.Duration)
		m.finished.WithLabelValues(typ, string(scheduler.StateSucceeded)).Inc()
	case scheduler.EventFailed:
		m.attemptEnded(typ, "failed", e.Duration)
	case scheduler.EventSnoozed:
		m.attemptEnded(typ, "snoozed", e.Duration)
	case scheduler.EventAborted:
		m.attemptEnded(typ, "aborted", e.Duration)
	case scheduler.EventRetried:
		m.retries.WithLabelValues(typ).Inc()
	case scheduler.EventDead:
		m.dead.WithLabelValues(typ).Inc()
		m.finished.WithLabelValues(typ, string(scheduler.StateDead)).Inc()
	case scheduler.EventCanceled:
		m.finished.WithLabelValues(typ, string(scheduler.StateCanceled)).Inc()
	}
}

// ObserveTick implements scheduler.TickObserver: it counts the ticks of
// periodic schedules by outcome (skipped ticks by their number).
func (m *Metrics) ObserveTick(e scheduler.TickEvent) {
	m.ticks.WithLabelValues(e.Schedule, e.Outcome.String()).Add(float64(max(e.Count, 1)))
}

// attemptEnded records the end of an attempt that EventStarted began.
func (m *Metrics) attemptEnded(typ, outcome string, ran time.Duration) {
	m.runDuration.WithLabelValues(typ, outcome).Observe(ran.Seconds())
	m.inFlight.WithLabelValues(typ).Dec()
}

// labelSet admits label values up to a limit; later ones become
// OtherLabel.
type labelSet struct {
	mu    sync.RWMutex
	seen  map[string]struct{}
	limit int
}

func newLabelSet(limit int) *labelSet {
	return &labelSet{seen: make(map[string]struct{}), limit: limit}
}

func (l *labelSet) get(v string) string {
	l.mu.RLock()
	_, ok := l.seen[v]
	full := len(l.seen) >= l.limit
	l.mu.RUnlock()
	if ok {
		return v
	}
	if full {
		return OtherLabel
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[v]; ok || len(l.seen) < l.limit {
		l.seen[v] = struct{}{}
		return v
	}
	return OtherLabel
}

func (l *labelSet) values() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]string, 0, len(l.seen))
	for v := range l.seen {
		out = append(out, v)
	}
	return out
}
