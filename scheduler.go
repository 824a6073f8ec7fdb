package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler/internal/coalesce"
	"github.com/dtsched/scheduler/internal/failpoint"
)

// Scheduler submits tasks and answers questions about them; NewWorker
// creates the workers that run them. A Scheduler is safe for concurrent
// use. Any number of Schedulers in any number of processes may share one
// Broker and Store backend.
type Scheduler struct {
	broker Broker
	store  Store
	cfg    config
	log    *zap.Logger
	now    func() time.Time

	published *batcher // takes tasks of confirmed messages out of the outbox
	transient bool     // the broker may lose confirmed messages: keep tasks in the outbox
	submits   *coalesce.Group[*Task, SubmitResult]

	closed  atomic.Bool
	mu      sync.Mutex
	workers map[string]*Worker // running workers of this process, by ID

	periodic periodicState // schedules and the periodic loop (periodic.go)
}

// New returns a Scheduler using broker to move tasks and store to keep
// them. It starts one background goroutine; call Close when done.
func New(broker Broker, store Store, opts ...Option) (*Scheduler, error) {
	if broker == nil {
		return nil, fmt.Errorf("%w: broker is nil", ErrInvalidOption)
	}
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidOption)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		o.applyScheduler(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{
		broker:  broker,
		store:   store,
		cfg:     cfg,
		log:     cfg.logger,
		now:     time.Now,
		workers: make(map[string]*Worker),
	}
	if tb, ok := broker.(TransientBroker); ok && tb.Transient() {
		s.transient = true
	}
	s.published = newBatcher(func(ctx context.Context, msgs []Message) error {
		return store.Published(ctx, msgs...)
	}, s.log)
	s.submits = &coalesce.Group[*Task, SubmitResult]{Run: s.submit, MaxBatch: maxSubmitBatch, MaxInFlight: maxSubmitsInFlight}
	return s, nil
}

// Close stops the Scheduler's background work: Submit and friends return
// ErrClosed afterwards. It does not close the broker or store, which the
// caller owns, nor stop Workers, which stop with their Run context. A
// second Close does nothing.
func (s *Scheduler) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.published.close()
	return nil
}

// Request is one task of a SubmitMany batch.
type Request struct {
	Type    string
	Payload []byte
	Options []SubmitOption
}

// SubmitResult is the outcome of one Request of a SubmitMany batch.
type SubmitResult struct {
	// ID is the task's ID; for a duplicate, the ID of the unfinished task
	// holding the unique key.
	ID string
	// Err is nil when the task was submitted, a *DuplicateError when its
	// unique key is taken, or a publish error (see Submit).
	Err error
}

// Submit stores a task and publishes it. It returns the task's ID and nil
// only once the task is durable in both the store and the broker.
// Concurrent calls share their store writes and publishes: each batch is
// one Store.Create and one Broker.Publish.
//
// With WithUniqueKey, while another task with the key is unfinished, it
// returns that task's ID and a *DuplicateError (errors.Is
// ErrDuplicateTask). An invalid type, payload or option gives a
// *ValidationError (errors.Is ErrInvalidTask) and stores nothing.
//
// If the store write fails, nothing is submitted and the ID is empty. If
// the publish fails after the store write, Submit cancels the task (Status
// shows it canceled with the publish error) and returns its ID with the
// error; should the task have been delivered despite the error, it runs and
// Submit returns nil. Only if the cancel cannot be stored either does the
// task stay pending, to be published by the next sweep of a worker.
func (s *Scheduler) Submit(ctx context.Context, taskType string, payload []byte, opts ...SubmitOption) (string, error) {
	t, err := s.newTask(taskType, payload, opts, s.now())
	if err != nil {
		return "", err
	}
	if s.closed.Load() {
		return "", ErrClosed
	}
	res, err := s.submits.Do(ctx, t)
	if err != nil {
		return "", err
	}
	return res.ID, res.Err
}

// Concurrent Submit calls are stored and published together: a call that
// arrives while maxSubmitsInFlight batches are being stored and published
// waits for the next batch (of at most maxSubmitBatch tasks), which then
// takes one store call and one Publish. A lone Submit runs at once.
const (
	maxSubmitBatch     = 256
	maxSubmitsInFlight = 4
)

// SubmitMany submits a batch in one store round trip and one publish. If
// any request is invalid, nothing is stored and the error names it (its
// index and field). Otherwise the results, one per request in order, say
// what happened to each; a non-nil error means the store write failed and
// nothing was submitted.
func (s *Scheduler) SubmitMany(ctx context.Context, reqs []Request) ([]SubmitResult, error) {
	now := s.now()
	tasks := make([]*Task, len(reqs))
	for i, r := range reqs {
		t, err := s.newTask(r.Type, r.Payload, r.Options, now)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		tasks[i] = t
	}
	return s.submit(ctx, tasks)
}

// newTask builds and validates a task from a submission.
func (s *Scheduler) newTask(taskType string, payload []byte, opts []SubmitOption, now time.Time) (*Task, error) {
	c := submitConfig{priority: PriorityDefault, queue: DefaultQueue, maxRetries: DefaultMaxRetries}
	if len(opts) > 0 {
		var err error
		if c, err = applySubmitOptions(c, opts); err != nil {
			return nil, err
		}
	}
	if len(payload) > s.cfg.maxPayload {
		return nil, invalid("payload", fmt.Sprintf("%d bytes, more than the limit of %d", len(payload), s.cfg.maxPayload))
	}
	if c.delay < 0 {
		return nil, invalid("delay", "must not be negative")
	}
	if c.maxRetries > MaxRetriesLimit {
		return nil, invalid("max_retries", fmt.Sprintf("must be at most %d", MaxRetriesLimit))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("scheduler: task id: %w", err)
	}
	runAt := now.Add(c.delay)
	if !c.runAt.IsZero() && c.runAt.After(now) {
		runAt = c.runAt
	}
	state := StatePending
	if runAt.After(now) {
		state = StateScheduled
	}
	t := &Task{
		ID: id.String(), Type: taskType, Queue: c.queue, Payload: cloneBytes(payload),
		Priority: c.priority, State: state, MaxRetries: c.maxRetries, Timeout: c.timeout,
		RunAt: runAt, CreatedAt: now, UniqueKey: c.uniqueKey,
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// applySubmitOptions returns c with opts applied. (Kept apart from newTask
// so that only a submission with options puts its config on the heap.)
func applySubmitOptions(c submitConfig, opts []SubmitOption) (submitConfig, error) {
	for _, o := range opts {
		if o == nil {
			return c, fmt.Errorf("%w: nil submit option", ErrInvalidOption)
		}
		o.applySubmit(&c)
	}
	return c, nil
}

// submit stores tasks, publishes the ones stored, and takes them out of
// the outbox once confirmed.
func (s *Scheduler) submit(ctx context.Context, tasks []*Task) ([]SubmitResult, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	errs, err := s.store.Create(ctx, tasks)
	if err != nil {
		return nil, fmt.Errorf("scheduler: store: %w", err)
	}
	res := make([]SubmitResult, len(tasks))
	created := make([]int, 0, len(tasks)) // indexes of the tasks stored
	for i, t := range tasks {
		res[i] = SubmitResult{ID: t.ID, Err: errs[i]}
		if errs[i] == nil {
			created = append(created, i)
		} else if dup := errorAs[*DuplicateError](errs[i]); dup != nil {
			res[i].ID = dup.ExistingID
		}
	}
	if len(created) == 0 {
		return res, nil
	}
	failpoint.Inject(failpoint.SubmitAfterStore)

	now := s.now()
	msgs := make([]Message, len(created))
	for j, i := range created {
		msgs[j] = messageFor(tasks[i], now)
	}
	if perr := s.broker.Publish(ctx, msgs...); perr != nil {
		s.abort(ctx, tasks, created, res, perr)
	}
	sent := make([]Message, 0, len(msgs))
	for j, i := range created {
		if res[i].Err == nil {
			sent = append(sent, msgs[j])
			if ce := s.log.Check(zap.DebugLevel, "task submitted"); ce != nil {
				ce.Write(taskFields(tasks[i])...)
			}
			s.emit(Event{Kind: EventSubmitted, Task: tasks[i], Time: now})
		}
	}
	s.confirmed(sent...)
	return res, nil
}

// abort cancels the created tasks whose publish failed and records the
// error of each in res. A task a worker started despite the error was
// delivered after all: it keeps a nil error.
func (s *Scheduler) abort(ctx context.Context, tasks []*Task, created []int, res []SubmitResult, perr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	reason := "submit failed: publish: " + perr.Error()
	for _, i := range created {
		id := tasks[i].ID
		_, err := s.store.Cancel(ctx, id, CancelParams{Reason: reason, OnlyUnstarted: true, Now: s.now()})
		switch {
		case err == nil:
			res[i].Err = fmt.Errorf("scheduler: publish: %w (task %s canceled)", perr, id)
		case errors.Is(err, ErrStaleAttempt) || errors.Is(err, ErrTaskFinished):
			// A worker started it: the message got through after all.
		default:
			s.log.Error("publish failed and the task could not be canceled; the next sweep publishes it",
				zap.String("task_id", id), zap.NamedError("publish_error", perr), zap.Error(err))
			res[i].Err = fmt.Errorf("scheduler: publish: %w (task %s stays stored and is published by the next sweep)", perr, id)
		}
	}
}

// confirmed notes that the broker confirmed msgs. The tasks of undelayed
// messages leave the outbox (in a batch, off the caller's path); a delayed
// message's task, or any task of a transient broker, stays there until it
// starts, in case the broker loses the message.
func (s *Scheduler) confirmed(msgs ...Message) {
	if s.transient {
		return
	}
	var undelayed []Message // allocated only if a message is undelayed
	for _, m := range msgs {
		if m.Delay != 0 {
			continue
		}
		if undelayed == nil {
			undelayed = make([]Message, 0, len(msgs))
		}
		undelayed = append(undelayed, m)
	}
	if len(undelayed) > 0 {
		s.published.add(undelayed)
	}
}

// taskFields are the log fields naming a task outside a worker.
func taskFields(t *Task) []zap.Field {
	return []zap.Field{zap.String("task_id", t.ID), zap.String("type", t.Type), zap.String("queue", t.Queue), zap.Int("attempt", t.Attempt)}
}

// messageFor returns the message that delivers t's next attempt.
func messageFor(t *Task, now time.Time) Message {
	return Message{TaskID: t.ID, Attempt: t.Attempt, Queue: t.Queue, Priority: t.Priority, Delay: max(t.RunAt.Sub(now), 0)}
}

// Status returns the task with id as it is now, or ErrTaskNotFound. A
// malformed id gives a *ValidationError.
func (s *Scheduler) Status(ctx context.Context, id string) (*Task, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	return s.store.Get(ctx, id)
}

// Cancel cancels a pending, scheduled, retrying or running task. A running
// task's handler sees its context canceled (at once in this process, within
// a heartbeat interval elsewhere) and its result is discarded. A finished
// task gives ErrTaskFinished.
func (s *Scheduler) Cancel(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	now := s.now()
	t, err := s.store.Cancel(ctx, id, CancelParams{Reason: "canceled", Now: now})
	if err != nil {
		return err
	}
	s.mu.Lock()
	w := s.workers[t.WorkerID]
	s.mu.Unlock()
	if w != nil {
		w.cancelTask(id, t.Attempt)
	}
	s.log.Info("task canceled", taskFields(t)...)
	s.emit(Event{Kind: EventCanceled, Task: t, Time: now})
	return nil
}

// Retry runs a dead or canceled task again, with a fresh retry budget.
// Other states give ErrNotRetryable. If the publish fails the task is
// pending and the next sweep publishes it; the error says so.
func (s *Scheduler) Retry(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	now := s.now()
	t, err := s.store.Retry(ctx, id, now)
	if err != nil {
		return err
	}
	m := messageFor(t, now)
	if err := s.broker.Publish(ctx, m); err != nil {
		return fmt.Errorf("scheduler: task %s is pending again but its publish failed (the next sweep publishes it): %w", id, err)
	}
	s.confirmed(m)
	s.log.Info("task retried by request", taskFields(t)...)
	s.emit(Event{Kind: EventRetried, Task: t, Time: now})
	return nil
}

// List returns one page of tasks matching f, newest first. Pass the
// returned Page.Next as f.Cursor for the next page.
func (s *Scheduler) List(ctx context.Context, f ListFilter) (Page, error) {
	if f.State != "" && !f.State.Valid() {
		return Page{}, invalid("state", fmt.Sprintf("unknown state %q", f.State))
	}
	if f.Type != "" {
		if err := validateType(f.Type); err != nil {
			return Page{}, err
		}
	}
	if f.Queue != "" {
		if err := validateQueue(f.Queue); err != nil {
			return Page{}, err
		}
	}
	if f.Cursor != "" {
		if err := ValidateID(f.Cursor); err != nil {
			return Page{}, invalid("cursor", "malformed")
		}
	}
	return s.store.List(ctx, f)
}

// Counts returns how many stored tasks are in each state.
func (s *Scheduler) Counts(ctx context.Context) (map[State]int64, error) {
	return s.store.Counts(ctx)
}

// QueueDepth returns how many messages of queue are ready for a worker.
func (s *Scheduler) QueueDepth(ctx context.Context, queue string) (int, error) {
	if err := validateQueue(queue); err != nil {
		return 0, err
	}
	return s.broker.Depth(ctx, queue)
}

// Workers returns the live worker nodes, from their heartbeats.
func (s *Scheduler) Workers(ctx context.Context) ([]WorkerInfo, error) {
	return s.store.Workers(ctx)
}

// Health is the reachability of the two backends (a nil error is healthy)
// and whether the Scheduler was closed.
type Health struct {
	Broker error
	Store  error
	Closed bool
}

// OK reports whether the Scheduler is open and both backends answered.
func (h Health) OK() bool { return !h.Closed && h.Broker == nil && h.Store == nil }

// Health pings the broker and the store concurrently. A closed Scheduler
// is not healthy whatever its backends say.
func (s *Scheduler) Health(ctx context.Context) Health {
	if s.closed.Load() {
		return Health{Closed: true}
	}
	var h Health
	var wg sync.WaitGroup
	wg.Go(func() { h.Broker = s.broker.Ping(ctx) })
	h.Store = s.store.Ping(ctx)
	wg.Wait()
	return h
}

// emit sends e to every observer.
func (s *Scheduler) emit(e Event) {
	for _, o := range s.cfg.observers {
		o.Observe(e)
	}
}

func (s *Scheduler) register(w *Worker) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workers[w.cfg.id]; ok {
		return fmt.Errorf("%w: a worker with id %q runs in this process", ErrInvalidOption, w.cfg.id)
	}
	s.workers[w.cfg.id] = w
	return nil
}

func (s *Scheduler) unregister(w *Worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.workers, w.cfg.id)
}

// batcher collects confirmed messages and hands them to flush in batches,
// from one background goroutine: after maxBatch messages or flushEvery,
// whichever comes first.
type batcher struct {
	flush func(context.Context, []Message) error
	log   *zap.Logger
	in    chan []Message
	stop  chan struct{}
	done  chan struct{}
}

const (
	maxBatch   = 512
	flushEvery = 20 * time.Millisecond
)

func newBatcher(flush func(context.Context, []Message) error, log *zap.Logger) *batcher {
	b := &batcher{flush: flush, log: log, in: make(chan []Message, 64), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// add queues msgs; after close they are dropped (the sweep deals with
// their tasks).
func (b *batcher) add(msgs []Message) {
	select {
	case b.in <- msgs:
	case <-b.stop:
	}
}

func (b *batcher) close() {
	close(b.stop)
	<-b.done
}

func (b *batcher) run() {
	defer close(b.done)
	var batch []Message
	timer := time.NewTimer(flushEvery)
	timer.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := b.flush(ctx, batch); err != nil {
			b.log.Error("could not take published tasks out of the outbox; the sweep may publish them again", zap.Int("tasks", len(batch)), zap.Error(err))
		}
		cancel()
		batch = batch[:0]
	}
	for {
		select {
		case msgs := <-b.in:
			if len(batch) == 0 {
				timer.Reset(flushEvery)
			}
			batch = append(batch, msgs...)
			if len(batch) >= maxBatch {
				timer.Stop()
				send()
			}
		case <-timer.C:
			send()
		case <-b.stop:
			timer.Stop()
			for {
				select {
				case msgs := <-b.in:
					batch = append(batch, msgs...)
				default:
					send()
					return
				}
			}
		}
	}
}
