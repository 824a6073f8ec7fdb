package scheduler

import (
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// Option configures a Scheduler.
type Option interface{ applyScheduler(*config) }

// SubmitOption configures one submitted task.
type SubmitOption interface{ applySubmit(*submitConfig) }

// WorkerOption configures a Worker.
type WorkerOption interface{ applyWorker(*workerConfig) }

type schedulerOption func(*config)

func (f schedulerOption) applyScheduler(c *config) { f(c) }

type submitOption func(*submitConfig)

func (f submitOption) applySubmit(c *submitConfig) { f(c) }

type workerOption func(*workerConfig)

func (f workerOption) applyWorker(c *workerConfig) { f(c) }

// RetryPolicy returns how long to wait before the next attempt of a task
// whose attempt number `attempt` (1 for the first run) failed with err.
type RetryPolicy func(attempt int, err error) time.Duration

// Backoff returns a RetryPolicy that waits base after the first failure,
// doubling after each further one up to limit, with ±20% random jitter so that
// tasks failing together do not retry together.
func Backoff(base, limit time.Duration) RetryPolicy {
	return func(attempt int, _ error) time.Duration {
		d := base
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		jitter := time.Duration(float64(d) * 0.2 * (2*rand.Float64() - 1))
		return max(d+jitter, 0)
	}
}

// config is the Scheduler's configuration; defaults are set in New.
type config struct {
	logger        *zap.Logger
	observers     []Observer
	maxPayload    int
	retry         RetryPolicy
	retention     time.Duration
	sweepInterval time.Duration
}

func defaultConfig() config {
	return config{
		logger:        zap.NewNop(),
		maxPayload:    DefaultMaxPayload,
		retry:         Backoff(time.Second, 10*time.Minute),
		retention:     7 * 24 * time.Hour,
		sweepInterval: 10 * time.Second,
	}
}

func (c *config) validate() error {
	switch {
	case c.logger == nil:
		return fmt.Errorf("%w: logger is nil", ErrInvalidOption)
	case c.maxPayload < 1:
		return fmt.Errorf("%w: max payload %d, must be positive", ErrInvalidOption, c.maxPayload)
	case c.retry == nil:
		return fmt.Errorf("%w: retry policy is nil", ErrInvalidOption)
	case c.retention < 0:
		return fmt.Errorf("%w: retention %s, must not be negative", ErrInvalidOption, c.retention)
	case c.sweepInterval <= 0:
		return fmt.Errorf("%w: sweep interval %s, must be positive", ErrInvalidOption, c.sweepInterval)
	}
	for _, o := range c.observers {
		if o == nil {
			return fmt.Errorf("%w: observer is nil", ErrInvalidOption)
		}
	}
	return nil
}

// WithLogger sets the zap logger for the Scheduler and its Workers.
// Defaults to a no-op logger.
func WithLogger(l *zap.Logger) Option {
	return schedulerOption(func(c *config) { c.logger = l })
}

// WithObserver adds an Observer that receives every task event (see
// Event). May be given more than once. Defaults to none.
func WithObserver(o Observer) Option {
	return schedulerOption(func(c *config) { c.observers = append(c.observers, o) })
}

// WithMaxPayload sets the largest payload Submit accepts, in bytes.
// Defaults to DefaultMaxPayload (1 MiB).
func WithMaxPayload(n int) Option {
	return schedulerOption(func(c *config) { c.maxPayload = n })
}

// WithRetryPolicy sets how long a failed task waits before its next
// attempt. Defaults to Backoff(1s, 10m).
func WithRetryPolicy(p RetryPolicy) Option {
	return schedulerOption(func(c *config) { c.retry = p })
}

// WithRetention sets how long succeeded, dead and canceled tasks are kept
// before workers purge them. Zero keeps them forever. Defaults to 7 days.
func WithRetention(d time.Duration) Option {
	return schedulerOption(func(c *config) { c.retention = d })
}

// WithSweepInterval sets how often workers look for tasks whose broker
// message was never confirmed (a crash or broker failure after the store
// write) and publish them again, and purge expired tasks. A task is
// republished once its message has been unconfirmed for three intervals.
// One worker in the cluster does each sweep. Defaults to 10 seconds.
func WithSweepInterval(d time.Duration) Option {
	return schedulerOption(func(c *config) { c.sweepInterval = d })
}

// submitConfig holds a submission's options before they become a Task.
type submitConfig struct {
	priority   Priority
	queue      string
	maxRetries int
	timeout    time.Duration
	delay      time.Duration
	runAt      time.Time
	uniqueKey  string
}

// WithPriority sets the task's priority, PriorityMin (0) to PriorityMax
// (9). Defaults to PriorityDefault (5).
func WithPriority(p Priority) SubmitOption {
	return submitOption(func(c *submitConfig) { c.priority = p })
}

// WithQueue sets the queue the task waits in. Defaults to DefaultQueue.
func WithQueue(name string) SubmitOption {
	return submitOption(func(c *submitConfig) { c.queue = name })
}

// WithMaxRetries sets how many times a failed task is retried before it is
// dead (0 to MaxRetriesLimit). Defaults to DefaultMaxRetries (3).
func WithMaxRetries(n int) SubmitOption {
	return submitOption(func(c *submitConfig) { c.maxRetries = n })
}

// WithTimeout bounds each attempt; the handler's context ends after d.
// Defaults to no timeout.
func WithTimeout(d time.Duration) SubmitOption {
	return submitOption(func(c *submitConfig) { c.timeout = d })
}

// WithDelay makes the task wait d before it runs. Defaults to no delay.
func WithDelay(d time.Duration) SubmitOption {
	return submitOption(func(c *submitConfig) { c.delay, c.runAt = d, time.Time{} })
}

// WithRunAt makes the task wait until t before it runs. A time in the past
// runs it at once.
func WithRunAt(t time.Time) SubmitOption {
	return submitOption(func(c *submitConfig) { c.runAt, c.delay = t, 0 })
}

// WithUniqueKey makes the submission fail with a *DuplicateError
// (errors.Is ErrDuplicateTask) carrying the existing task's ID while
// another task with the same key has not reached a terminal state. The key
// is released as soon as that task succeeds, dies or is canceled.
func WithUniqueKey(key string) SubmitOption {
	return submitOption(func(c *submitConfig) { c.uniqueKey = key })
}

// workerConfig is a Worker's configuration; defaults are set in NewWorker.
type workerConfig struct {
	concurrency     int
	prefetch        int
	queues          []string
	id              string
	shutdownTimeout time.Duration
	heartbeat       time.Duration
}

// WithConcurrency sets how many tasks the worker runs at once. Defaults
// to 10.
func WithConcurrency(n int) WorkerOption {
	return workerOption(func(c *workerConfig) { c.concurrency = n })
}

// WithPrefetch sets how many messages per queue the worker may hold
// unacknowledged, running or about to run. Prefetched messages are no
// longer reordered by priority, so keep it close to the concurrency.
// Defaults to the concurrency.
func WithPrefetch(n int) WorkerOption {
	return workerOption(func(c *workerConfig) { c.prefetch = n })
}

// WithQueues sets the queues the worker takes tasks from. Defaults to
// DefaultQueue only.
func WithQueues(names ...string) WorkerOption {
	return workerOption(func(c *workerConfig) { c.queues = append([]string(nil), names...) })
}

// WithWorkerID names the worker in task records, heartbeats and logs. It
// must be unique in the cluster. Defaults to host-pid-random.
func WithWorkerID(id string) WorkerOption {
	return workerOption(func(c *workerConfig) { c.id = id })
}

// WithShutdownTimeout sets how long Run waits for in-flight tasks after
// its context ends before it cancels them and hands them back for
// redelivery. Defaults to 30 seconds.
func WithShutdownTimeout(d time.Duration) WorkerOption {
	return workerOption(func(c *workerConfig) { c.shutdownTimeout = d })
}

// WithHeartbeatInterval sets how often the worker records that it is alive
// (and learns of cancellations of its running tasks). A worker missing
// three heartbeats is no longer listed. Defaults to 2 seconds.
func WithHeartbeatInterval(d time.Duration) WorkerOption {
	return workerOption(func(c *workerConfig) { c.heartbeat = d })
}
