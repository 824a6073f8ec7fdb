package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dtsched/scheduler"
)

// InstrumentBroker returns b wrapped so that its failed calls count in
// broker_errors_total{operation}, where operation is publish, consume,
// depth or ping. If b counts its reconnections (a method Reconnects()
// uint64, as the RabbitMQ broker has), their number is reported as
// broker_reconnects_total and the returned broker has that method too.
// Pass the returned broker to scheduler.New.
//
// Errors of settling deliveries (ack, requeue, dead-letter) are not
// counted here; the worker logs them.
func (m *Metrics) InstrumentBroker(b scheduler.Broker) scheduler.Broker {
	ib := &broker{b: b, errs: m.brokerErrors}
	for _, op := range brokerOps {
		ib.errs.WithLabelValues(op)
	}
	r, ok := b.(reconnecter)
	if !ok {
		return ib
	}
	m.mu.Lock()
	m.brokers = append(m.brokers, r)
	m.mu.Unlock()
	return &reconnectingBroker{broker: ib, r: r}
}

// InstrumentStore returns s wrapped so that its failed calls count in
// store_errors_total{operation}, where operation is the method's name in
// snake_case (create, get, start, finish, ...). Definite answers
// (ErrTaskNotFound, ErrDuplicateTask, ErrTaskFinished, ErrStaleAttempt,
// ErrNotRetryable, ErrInvalidTask), a closed store and a caller's
// cancellation are not errors of the store and are not counted. Pass the
// returned store to scheduler.New.
func (m *Metrics) InstrumentStore(s scheduler.Store) scheduler.Store {
	is := &store{s: s, errs: m.storeErrors}
	for _, op := range storeOps {
		is.errs.WithLabelValues(op)
	}
	return is
}

var (
	brokerOps = []string{"publish", "consume", "depth", "ping"}
	storeOps  = []string{"create", "get", "start", "finish", "cancel", "retry", "outbox", "published", "list", "counts", "purge", "heartbeat", "remove_worker", "workers", "claim", "ping"}
)

// answers are errors through which a backend answers a question rather
// than fails to.
var answers = []error{
	scheduler.ErrTaskNotFound, scheduler.ErrDuplicateTask, scheduler.ErrInvalidTask,
	scheduler.ErrTaskFinished, scheduler.ErrStaleAttempt, scheduler.ErrNotRetryable,
	scheduler.ErrInvalidOption, scheduler.ErrClosed, context.Canceled,
}

func count(errs *prometheus.CounterVec, op string, err error) {
	if err == nil {
		return
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return
		}
	}
	errs.WithLabelValues(op).Inc()
}

// broker counts the errors of a scheduler.Broker.
type broker struct {
	b    scheduler.Broker
	errs *prometheus.CounterVec
}

var _ scheduler.Broker = (*broker)(nil)

func (b *broker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	err := b.b.Publish(ctx, msgs...)
	count(b.errs, "publish", err)
	return err
}

func (b *broker) Consume(ctx context.Context, queue string, prefetch int) (scheduler.Consumer, error) {
	c, err := b.b.Consume(ctx, queue, prefetch)
	count(b.errs, "consume", err)
	return c, err
}

func (b *broker) Depth(ctx context.Context, queue string) (int, error) {
	n, err := b.b.Depth(ctx, queue)
	count(b.errs, "depth", err)
	return n, err
}

func (b *broker) Ping(ctx context.Context) error {
	err := b.b.Ping(ctx)
	count(b.errs, "ping", err)
	return err
}

func (b *broker) Close() error { return b.b.Close() }

// reconnectingBroker is a broker whose wrapped broker counts reconnects.
type reconnectingBroker struct {
	*broker
	r reconnecter
}

// Reconnects returns the wrapped broker's count.
func (b *reconnectingBroker) Reconnects() uint64 { return b.r.Reconnects() }

// store counts the errors of a scheduler.Store. It implements every
// method itself, so that a method added to the interface cannot go
// uncounted.
type store struct {
	s    scheduler.Store
	errs *prometheus.CounterVec
}

var _ scheduler.Store = (*store)(nil)

func (s *store) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	res, err := s.s.Create(ctx, tasks)
	count(s.errs, "create", err)
	return res, err
}

func (s *store) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	t, err := s.s.Get(ctx, id)
	count(s.errs, "get", err)
	return t, err
}

func (s *store) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	t, err := s.s.Start(ctx, id, p)
	count(s.errs, "start", err)
	return t, err
}

func (s *store) Finish(ctx context.Context, id string, p scheduler.FinishParams) (*scheduler.Task, error) {
	t, err := s.s.Finish(ctx, id, p)
	count(s.errs, "finish", err)
	return t, err
}

func (s *store) Cancel(ctx context.Context, id string, p scheduler.CancelParams) (*scheduler.Task, error) {
	t, err := s.s.Cancel(ctx, id, p)
	count(s.errs, "cancel", err)
	return t, err
}

func (s *store) Retry(ctx context.Context, id string, now time.Time) (*scheduler.Task, error) {
	t, err := s.s.Retry(ctx, id, now)
	count(s.errs, "retry", err)
	return t, err
}

func (s *store) Outbox(ctx context.Context, before time.Time, limit int) ([]*scheduler.Task, error) {
	ts, err := s.s.Outbox(ctx, before, limit)
	count(s.errs, "outbox", err)
	return ts, err
}

func (s *store) Published(ctx context.Context, msgs ...scheduler.Message) error {
	err := s.s.Published(ctx, msgs...)
	count(s.errs, "published", err)
	return err
}

func (s *store) Republished(ctx context.Context, due time.Time, msgs ...scheduler.Message) error {
	err := s.s.Republished(ctx, due, msgs...)
	count(s.errs, "republished", err)
	return err
}

func (s *store) List(ctx context.Context, f scheduler.ListFilter) (scheduler.Page, error) {
	p, err := s.s.List(ctx, f)
	count(s.errs, "list", err)
	return p, err
}

func (s *store) Counts(ctx context.Context) (map[scheduler.State]int64, error) {
	c, err := s.s.Counts(ctx)
	count(s.errs, "counts", err)
	return c, err
}

func (s *store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := s.s.Purge(ctx, before, limit)
	count(s.errs, "purge", err)
	return n, err
}

func (s *store) Heartbeat(ctx context.Context, w scheduler.WorkerInfo, ttl time.Duration) ([]string, error) {
	ids, err := s.s.Heartbeat(ctx, w, ttl)
	count(s.errs, "heartbeat", err)
	return ids, err
}

func (s *store) RemoveWorker(ctx context.Context, id string) error {
	err := s.s.RemoveWorker(ctx, id)
	count(s.errs, "remove_worker", err)
	return err
}

func (s *store) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	ws, err := s.s.Workers(ctx)
	count(s.errs, "workers", err)
	return ws, err
}

func (s *store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := s.s.Claim(ctx, key, ttl)
	count(s.errs, "claim", err)
	return ok, err
}

func (s *store) Ping(ctx context.Context) error {
	err := s.s.Ping(ctx)
	count(s.errs, "ping", err)
	return err
}
