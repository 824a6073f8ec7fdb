package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dtsched/scheduler/internal/failpoint"
)

// HandlerFunc runs one attempt of a task. Returning nil marks the task
// succeeded (with t.Result stored if the handler set it); an error fails
// the attempt, which is retried with backoff until the task's retries are
// used up; SkipRetry (wrapped or not) makes it dead at once; Snooze
// reschedules it. ctx ends at the task's timeout, when the task is
// canceled, and when the worker stops: a handler must return soon after.
// A panic fails the attempt like an error.
type HandlerFunc func(ctx context.Context, t *Task) error

// Worker takes tasks from its queues and runs their handlers. Register
// handlers with Handle before Run. Any number of workers, in one process or
// many, share the work of a queue.
type Worker struct {
	s        *Scheduler
	cfg      workerConfig
	log      *zap.Logger
	tlog     *zap.Logger // log, for taskLogger: reports its caller's line
	host     string
	handlers map[string]HandlerFunc
	hmu      sync.RWMutex

	running   atomic.Bool
	startedAt time.Time
	mu        sync.Mutex
	inflight  map[string]handlerRun // running tasks by id
	nInFlight atomic.Int64
}

// handlerRun is a handler call in progress.
type handlerRun struct {
	cancel  context.CancelCauseFunc
	attempt int
}

// errCanceled is the cause a canceled task's handler context carries.
var errCanceled = errors.New("scheduler: task canceled")

// errWorkerStopping is the cause when the worker stops before the task ends.
var errWorkerStopping = errors.New("scheduler: worker stopping")

// NewWorker returns a Worker of s. It does nothing until Run.
func (s *Scheduler) NewWorker(opts ...WorkerOption) (*Worker, error) {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	cfg := workerConfig{
		concurrency:     10,
		queues:          []string{DefaultQueue},
		shutdownTimeout: 30 * time.Second,
		heartbeat:       2 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil worker option", ErrInvalidOption)
		}
		o.applyWorker(&cfg)
	}
	if cfg.id == "" {
		cfg.id = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(1<<16))
	}
	if cfg.prefetch == 0 {
		cfg.prefetch = cfg.concurrency
	}
	switch {
	case cfg.concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency %d, must be at least 1", ErrInvalidOption, cfg.concurrency)
	case cfg.prefetch < 1:
		return nil, fmt.Errorf("%w: prefetch %d, must be at least 1", ErrInvalidOption, cfg.prefetch)
	case len(cfg.queues) == 0:
		return nil, fmt.Errorf("%w: no queues", ErrInvalidOption)
	case cfg.shutdownTimeout < 0:
		return nil, fmt.Errorf("%w: shutdown timeout %s, must not be negative", ErrInvalidOption, cfg.shutdownTimeout)
	case cfg.heartbeat <= 0:
		return nil, fmt.Errorf("%w: heartbeat interval %s, must be positive", ErrInvalidOption, cfg.heartbeat)
	}
	for _, q := range cfg.queues {
		if err := validateQueue(q); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	if err := validateName("worker_id", cfg.id, MaxIDLen*2, "._:-"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	slices.Sort(cfg.queues)
	cfg.queues = slices.Compact(cfg.queues)
	log := s.log.With(zap.String("worker_id", cfg.id))
	return &Worker{
		s:        s,
		cfg:      cfg,
		log:      log,
		tlog:     log.WithOptions(zap.AddCallerSkip(1)),
		host:     host,
		handlers: make(map[string]HandlerFunc),
		inflight: make(map[string]handlerRun),
	}, nil
}

// ID returns the worker's ID.
func (w *Worker) ID() string { return w.cfg.id }

// Handle registers h for tasks of taskType, replacing any earlier handler.
// It may be called while the worker runs.
func (w *Worker) Handle(taskType string, h HandlerFunc) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	w.handlers[taskType] = h
}

func (w *Worker) handler(taskType string) HandlerFunc {
	w.hmu.RLock()
	defer w.hmu.RUnlock()
	return w.handlers[taskType]
}

// Run takes and runs tasks until ctx ends, then drains: it stops taking
// tasks, waits up to the shutdown timeout for the running ones, then
// cancels what still runs and hands it back to the broker for another
// worker. It returns nil after a clean drain, ErrShutdownTimeout if it had
// to hand tasks back, or the error that kept it from starting or from
// receiving (a closed broker). Run also keeps the worker's heartbeat and
// does the cluster's periodic sweep when its turn comes.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer w.running.Store(false)
	if w.s.closed.Load() {
		return ErrClosed
	}
	if err := w.s.register(w); err != nil {
		return err
	}
	defer w.s.unregister(w)

	consumers := make([]Consumer, 0, len(w.cfg.queues))
	closeConsumers := func() {
		for _, c := range consumers {
			if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
				w.log.Error("closing consumer", zap.Error(err))
			}
		}
	}
	for _, q := range w.cfg.queues {
		c, err := w.s.broker.Consume(ctx, q, w.cfg.prefetch)
		if err != nil {
			closeConsumers()
			return fmt.Errorf("scheduler: consume %s: %w", q, err)
		}
		consumers = append(consumers, c)
	}
	w.startedAt = w.s.now()
	w.log.Info("worker started", zap.Strings("queues", w.cfg.queues), zap.Int("concurrency", w.cfg.concurrency))

	// hard ends the handlers: it is canceled only when the drain times out.
	// Handler contexts keep ctx's values but not its cancellation.
	hard, hardCancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer hardCancel(nil)
	stopTaking := make(chan struct{})
	lost := make(chan error, len(consumers))
	var feeders, slots, background sync.WaitGroup

	// One queue: the slots receive straight from its consumer. Several: a
	// feeder per consumer forwards into one channel.
	var work <-chan Delivery
	if len(consumers) == 1 {
		work = consumers[0].Deliveries()
	} else {
		merged := make(chan Delivery)
		work = merged
		for i, c := range consumers {
			feeders.Go(func() { w.feed(c, w.cfg.queues[i], merged, stopTaking, lost) })
		}
	}
	var lostOnce sync.Once
	for range w.cfg.concurrency {
		sl := w.newSlot(hard, &slots)
		go func() {
			defer sl.leave()
			for {
				select {
				case d, ok := <-work:
					if !ok {
						lostOnce.Do(func() { lost <- fmt.Errorf("scheduler: queue %s: %w", w.cfg.queues[0], ErrClosed) })
						return
					}
					// select picks at random among ready cases: with
					// prefetched deliveries waiting, a draining worker
					// would go on starting tasks. One received after the
					// drain began stays unsettled; closing the consumer
					// returns it to the queue.
					select {
					case <-stopTaking:
						return
					default:
					}
					w.process(hard, d, sl)
					if sl.abandoned() {
						return // the worker stopped while the handler ran: the slot is gone
					}
				case <-stopTaking:
					return
				}
			}
		}()
	}
	bgCtx, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	background.Go(func() { w.heartbeatLoop(bgCtx) })
	background.Go(func() { w.sweepLoop(bgCtx) })

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-lost:
	}
	close(stopTaking)
	w.log.Info("worker draining", zap.Int64("in_flight", w.nInFlight.Load()))
	feeders.Wait()

	drained := make(chan struct{})
	go func() { slots.Wait(); close(drained) }()
	timer := time.NewTimer(w.cfg.shutdownTimeout)
	select {
	case <-drained:
		timer.Stop()
	case <-timer.C:
		w.log.Warn("shutdown timeout: handing unfinished tasks back", zap.Int64("in_flight", w.nInFlight.Load()))
		hardCancel(errWorkerStopping)
		<-drained
		if runErr == nil {
			runErr = ErrShutdownTimeout
		}
	}
	closeConsumers()
	bgCancel()
	background.Wait()
	rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := w.s.store.RemoveWorker(rmCtx, w.cfg.id); err != nil {
		w.log.Error("removing worker heartbeat", zap.Error(err))
	}
	cancel()
	w.log.Info("worker stopped")
	return runErr
}

// feed forwards deliveries of one consumer to the slots until told to stop.
// A delivery it holds when stopping stays unsettled; closing the consumer
// returns it to the queue.
func (w *Worker) feed(c Consumer, queue string, work chan<- Delivery, stop <-chan struct{}, lost chan<- error) {
	for {
		select {
		case d, ok := <-c.Deliveries():
			if !ok {
				lost <- fmt.Errorf("scheduler: queue %s: %w", queue, ErrClosed)
				return
			}
			select {
			case work <- d:
			case <-stop:
				return
			}
		case <-stop:
			return
		}
	}
}

// process runs one delivery to its end: start, handler, outcome, settle.
// Every state change is stored before the message is settled.
func (w *Worker) process(hard context.Context, d Delivery, sl *slot) {
	m := d.Message()
	log := &taskLogger{base: w.tlog, m: m}
	start := w.s.now()
	p := StartParams{Attempt: m.Attempt, Redelivered: d.Redelivered(), MessageID: d.ID(), WorkerID: w.cfg.id, Now: start}
	unsure := false // a try failed without an answer: it may have applied
	t, err := retryStore(hard, log, func(ctx context.Context) (*Task, error) {
		t, err := w.s.store.Start(ctx, m.TaskID, p)
		unsure = unsure || err != nil && !definite(err)
		return t, err
	})
	if unsure && (errors.Is(err, ErrTaskFinished) || errors.Is(err, ErrStaleAttempt)) {
		t, err = w.startedHere(hard, log, m.TaskID, p, err)
	}
	switch {
	case errors.Is(err, ErrTaskFinished) || errors.Is(err, ErrStaleAttempt):
		log.log(zap.DebugLevel, "dropping stale or duplicate message", zap.Int("message_attempt", m.Attempt), zap.Error(err))
		w.settle(d, log, d.Ack)
		return
	case errors.Is(err, ErrTaskNotFound) || errors.Is(err, ErrInvalidTask) || errors.Is(err, ErrCorruptTask):
		log.log(zap.WarnLevel, "message for an unknown or unreadable task: dead-lettering it", zap.Error(err))
		w.settle(d, log, func(ctx context.Context) error { return d.DeadLetter(ctx, err.Error()) })
		return
	case err != nil:
		log.log(zap.ErrorLevel, "could not start task; handing it back", zap.Error(err))
		w.settle(d, log, d.Requeue)
		return
	}
	log.t = t
	wait := start.Sub(t.RunAt)
	if t.RunAt.IsZero() || t.RunAt.Before(t.CreatedAt) {
		wait = start.Sub(t.CreatedAt)
	}
	log.log(zap.DebugLevel, "task started", zap.Duration("wait", wait))
	w.s.emit(Event{Kind: EventStarted, Task: t, Wait: max(wait, 0), WorkerID: w.cfg.id, Time: start})

	herr, handedBack := w.run(hard, sl, t, d, log, start)
	if sl.abandoned() {
		return // handed back by the slot's rescue
	}
	if handedBack {
		w.handBack(t, d, log, start)
		return
	}
	w.finish(hard, t, d, herr, w.s.now().Sub(start), log)
}

// run calls the task's handler on the slot's goroutine. It returns the
// handler's error, or handedBack when the worker stopped first. When the
// rescue took the task over meanwhile (sl.abandoned), the result is
// meaningless and the caller drops it.
func (w *Worker) run(hard context.Context, sl *slot, t *Task, d Delivery, log *taskLogger, start time.Time) (err error, handedBack bool) {
	h := w.handler(t.Type)
	if h == nil {
		return fmt.Errorf("%w %q", ErrNoHandler, t.Type), false
	}
	ctx, cancel := context.WithCancelCause(hard)
	defer cancel(nil)
	if t.Timeout > 0 {
		var c context.CancelFunc
		ctx, c = context.WithTimeout(ctx, t.Timeout)
		defer c()
	}
	w.mu.Lock()
	w.inflight[t.ID] = handlerRun{cancel, t.Attempt}
	w.mu.Unlock()
	w.nInFlight.Add(1)
	defer func() {
		w.mu.Lock()
		if r := w.inflight[t.ID]; r.attempt == t.Attempt {
			delete(w.inflight, t.ID) // not a later attempt's, taken over here meanwhile
		}
		w.mu.Unlock()
		w.nInFlight.Add(-1)
	}()

	sl.mu.Lock()
	sl.state, sl.t, sl.d, sl.log, sl.start = slotRunning, t, d, *log, start
	sl.mu.Unlock()
	called := hard.Err() == nil // a worker stopping hard starts no handler
	if called {
		err = callHandler(ctx, h, t)
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.state == slotAbandoned {
		return err, true
	}
	sl.state, sl.t, sl.d, sl.log = slotIdle, nil, nil, taskLogger{}
	// A handler that gave up because the worker is stopping did not fail:
	// its task goes back to the queue, as does one never called.
	return err, !called || err != nil && hard.Err() != nil
}

// cancelTask cancels the handler context of a task running here at
// attempt.
func (w *Worker) cancelTask(id string, attempt int) {
	w.mu.Lock()
	r, ok := w.inflight[id]
	w.mu.Unlock()
	if ok && r.attempt == attempt {
		r.cancel(errCanceled)
	}
}

// cancelNotice cancels the run here of a task the store reported canceled
// to this worker's heartbeat, unless that run is the task's current one:
// a notice can outlive its run, when the task was retried and started
// here again before the heartbeat, and that later run must go on. When
// the store cannot tell, the run is canceled: the notice is gone once
// delivered.
func (w *Worker) cancelNotice(ctx context.Context, id string) {
	w.mu.Lock()
	r, ok := w.inflight[id]
	w.mu.Unlock()
	if !ok {
		return
	}
	t, err := w.s.store.Get(ctx, id)
	if err == nil && t.State == StateRunning && t.WorkerID == w.cfg.id && t.Attempt == r.attempt {
		return
	}
	w.cancelTask(id, r.attempt)
}

// startedHere settles a Start that was refused after an earlier try failed
// without an answer: that try may have applied, with its reply lost, and
// then the task runs here, started at p.Now, and its message is the
// task's only one. It returns the task if so, else refusal, or, when the
// store cannot tell, an error that hands the message back (its redelivery
// takes the task over).
func (w *Worker) startedHere(hard context.Context, log *taskLogger, id string, p StartParams, refusal error) (*Task, error) {
	t, err := retryStore(hard, log, func(ctx context.Context) (*Task, error) { return w.s.store.Get(ctx, id) })
	switch {
	case err != nil && !definite(err):
		return nil, err
	case err == nil && t.State == StateRunning && t.WorkerID == p.WorkerID && t.StartedAt.Equal(p.Now):
		log.log(zap.InfoLevel, "a start whose reply was lost had applied: running the task")
		return t, nil
	}
	return nil, refusal
}

// handBack returns an unfinished task, started at start, to its queue when
// the worker stops, and reports the attempt aborted.
func (w *Worker) handBack(t *Task, d Delivery, log *taskLogger, start time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := FinishParams{Attempt: t.Attempt, State: StatePending, Now: w.s.now()}
	if w.s.transient {
		p.RunAt = p.Now // in the outbox: a broker restart may lose the requeued message
	}
	if _, err := w.s.store.Finish(ctx, t.ID, p); err != nil {
		log.log(zap.ErrorLevel, "handing back: could not store pending (the redelivery takes the task over)", zap.Error(err))
	}
	log.log(zap.InfoLevel, "task handed back for redelivery")
	w.settle(d, log, d.Requeue)
	now := w.s.now()
	w.s.emit(Event{Kind: EventAborted, Task: t, Duration: now.Sub(start), WorkerID: w.cfg.id, Time: now})
}

// finish stores the outcome of an attempt, publishes its next attempt if
// any, and settles the delivery.
func (w *Worker) finish(hard context.Context, t *Task, d Delivery, herr error, ran time.Duration, log *taskLogger) {
	failpoint.Inject(failpoint.WorkerBeforeFinish)
	now := w.s.now()
	p := FinishParams{Attempt: t.Attempt, Now: now}
	var snooze *SnoozeError
	var panicked *PanicError
	if herr != nil {
		snooze, panicked = errorAs[*SnoozeError](herr), errorAs[*PanicError](herr)
	}
	switch {
	case herr == nil:
		p.State, p.Result = StateSucceeded, t.Result
	case snooze != nil:
		p.State, p.RunAt, p.AddRetries = StateScheduled, now.Add(snooze.After), 1
	case errors.Is(herr, SkipRetry) || t.Attempt > t.MaxRetries:
		p.State, p.Error = StateDead, errorText(herr)
	default:
		p.State, p.Error, p.RunAt = StateRetrying, errorText(herr), now.Add(w.s.cfg.retry(t.Attempt, herr))
	}
	if panicked != nil {
		log.log(zap.ErrorLevel, "handler panicked", zap.Any("panic", panicked.Value), zap.ByteString("stack", panicked.Stack))
	}
	done, err := retryStore(hard, log, func(ctx context.Context) (*Task, error) {
		return w.s.store.Finish(ctx, t.ID, p)
	})
	if err != nil {
		w.s.emit(Event{Kind: EventAborted, Task: t, Err: err, Duration: ran, WorkerID: w.cfg.id, Time: now})
		if errors.Is(err, ErrTaskFinished) || errors.Is(err, ErrStaleAttempt) {
			log.log(zap.InfoLevel, "attempt outcome discarded: the task was canceled or taken over", zap.String("outcome", string(p.State)), zap.Error(err))
			w.settle(d, log, d.Ack)
			return
		}
		if errors.Is(err, ErrTaskNotFound) || errors.Is(err, ErrCorruptTask) {
			log.log(zap.ErrorLevel, "attempt outcome discarded: the task is gone or unreadable; dead-lettering its message", zap.String("outcome", string(p.State)), zap.Error(err))
			w.settle(d, log, func(ctx context.Context) error { return d.DeadLetter(ctx, err.Error()) })
			return
		}
		log.log(zap.ErrorLevel, "could not store the attempt's outcome; the message will be redelivered", zap.Error(err))
		return // unsettled: closing the consumer requeues it
	}
	log.ran = ran
	ev := Event{Task: done, Duration: ran, WorkerID: w.cfg.id, Time: now}
	switch p.State {
	case StateSucceeded:
		log.log(zap.DebugLevel, "task succeeded")
		ev.Kind = EventSucceeded
		w.s.emit(ev)
		w.settle(d, log, d.Ack)
	case StateDead:
		log.log(zap.ErrorLevel, "task dead", zap.Error(herr))
		ev.Err = herr
		ev.Kind = EventFailed
		w.s.emit(ev)
		ev.Kind = EventDead
		w.s.emit(ev)
		w.settle(d, log, func(ctx context.Context) error { return d.DeadLetter(ctx, p.Error) })
	case StateRetrying, StateScheduled:
		if p.State == StateRetrying {
			log.log(zap.WarnLevel, "task attempt failed; retrying", zap.Error(herr), zap.Time("run_at", p.RunAt))
			ev.Err = herr
			ev.Kind = EventFailed
			w.s.emit(ev)
			ev.Kind = EventRetried
			ev.Err = nil
			w.s.emit(ev)
		} else {
			log.log(zap.DebugLevel, "task snoozed", zap.Time("run_at", p.RunAt))
			ev.Kind = EventSnoozed
			w.s.emit(ev)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		next := messageFor(done, now)
		if err := w.s.broker.Publish(ctx, next); err != nil {
			log.log(zap.ErrorLevel, "publishing the next attempt failed; the sweep publishes it", zap.Error(err))
		} else {
			w.s.confirmed(next)
		}
		cancel()
		w.settle(d, log, d.Ack)
	}
}

// errorAs returns the first error in err's tree that is a T, or the zero T.
func errorAs[T error](err error) T {
	var target T
	errors.As(err, &target)
	return target
}

// errorText is the short form of a handler error kept in LastError.
func errorText(err error) string {
	if p := errorAs[*PanicError](err); p != nil {
		return p.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout: " + err.Error()
	}
	return err.Error()
}

// taskLogger logs about one task. It builds the task's fields only when a
// message is written, so the hot path costs nothing at quiet log levels.
type taskLogger struct {
	base *zap.Logger
	m    Message
	t    *Task
	ran  time.Duration
}

func (l *taskLogger) log(level zapcore.Level, msg string, extra ...zap.Field) {
	ce := l.base.Check(level, msg)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 5+len(extra))
	fields = append(fields, zap.String("task_id", l.m.TaskID), zap.String("queue", l.m.Queue))
	if l.t != nil {
		fields = append(fields, zap.String("type", l.t.Type), zap.Int("attempt", l.t.Attempt))
	}
	if l.ran > 0 {
		fields = append(fields, zap.Duration("duration", l.ran))
	}
	ce.Write(append(fields, extra...)...)
}

// settle acks, requeues or dead-letters a delivery, logging a failure: the
// broker then redelivers the message and the attempt fence drops it.
func (w *Worker) settle(d Delivery, log *taskLogger, op func(context.Context) error) {
	if err := op(context.Background()); err != nil {
		log.log(zap.ErrorLevel, "settling message failed; it will be redelivered and dropped as stale", zap.Error(err))
	}
}

// retryStore calls op until it succeeds or fails with a definite answer
// (a sentinel of this package); store outages are waited out with backoff
// until stop ends. op does not get stop's cancellation, so a stopping
// worker still records what it can; the store's own timeouts bound a call.
// Each failed try is logged at error level with the task's fields.
func retryStore(stop context.Context, log *taskLogger, op func(context.Context) (*Task, error)) (*Task, error) {
	backoff := 50 * time.Millisecond
	for {
		t, err := op(context.WithoutCancel(stop))
		if err == nil || definite(err) {
			return t, err
		}
		log.log(zap.ErrorLevel, "store unavailable; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-stop.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// definite reports whether err is an answer from the store rather than a
// failure to reach it.
func definite(err error) bool {
	for _, e := range []error{ErrTaskNotFound, ErrTaskFinished, ErrStaleAttempt, ErrInvalidTask, ErrCorruptTask, ErrNotRetryable, ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// republished records in the store that the sweep published msgs again,
// their tasks having waited for as long as waited says. They leave the
// outbox, unless the broker is transient and may lose these messages too:
// then they stay, due again after about as long as they have waited
// (rounded down to a power of two of sweep intervals), so that a task
// stuck behind a long backlog is sent again ever more rarely.
func (s *Scheduler) republished(ctx context.Context, now time.Time, msgs []Message, waited []time.Duration) error {
	if !s.transient {
		return s.store.Published(ctx, msgs...)
	}
	groups := make(map[time.Duration][]Message)
	for i, m := range msgs {
		after := s.cfg.sweepInterval
		for after*2 <= waited[i] {
			after *= 2
		}
		groups[after] = append(groups[after], m)
	}
	for after, ms := range groups {
		if err := s.store.Republished(ctx, now.Add(after), ms...); err != nil {
			return err
		}
	}
	return nil
}

// heartbeatLoop records the worker as alive every interval and cancels
// the running tasks the store reports canceled.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	ticker := time.NewTicker(w.cfg.heartbeat)
	defer ticker.Stop()
	for {
		info := WorkerInfo{
			ID: w.cfg.id, Host: w.host, PID: os.Getpid(), Queues: w.cfg.queues,
			Concurrency: w.cfg.concurrency, InFlight: int(w.nInFlight.Load()),
			StartedAt: w.startedAt, LastBeat: w.s.now(),
		}
		hctx, cancel := context.WithTimeout(ctx, w.cfg.heartbeat)
		canceled, err := w.s.store.Heartbeat(hctx, info, 3*w.cfg.heartbeat)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.log.Error("heartbeat failed", zap.Error(err))
		}
		for _, id := range canceled {
			w.cancelNotice(ctx, id)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sweepLoop, once per sweep interval and in one worker of the cluster,
// republishes tasks whose message was never confirmed and purges expired
// ones.
func (w *Worker) sweepLoop(ctx context.Context) {
	every := w.s.cfg.sweepInterval
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		now := w.s.now()
		key := "sweep:" + strconv.FormatInt(now.UnixNano()/int64(every), 10)
		won, err := w.s.store.Claim(ctx, key, every)
		if err != nil || !won {
			continue
		}
		if err := w.s.sweep(ctx, now); err != nil && ctx.Err() == nil {
			w.log.Error("sweep failed", zap.Error(err))
		}
	}
}

// sweep republishes the outbox tasks overdue by three sweep intervals (a
// crash between store write and publish, or a delayed message the broker
// lost) and purges tasks finished longer ago than the retention.
func (s *Scheduler) sweep(ctx context.Context, now time.Time) error {
	const batch, maxBatches = 500, 20
	for range maxBatches {
		due, err := s.store.Outbox(ctx, now.Add(-3*s.cfg.sweepInterval), batch)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		msgs := make([]Message, 0, len(due))
		var waited []time.Duration
		for _, t := range due {
			if t.State.Waiting() {
				msgs = append(msgs, messageFor(t, now))
				waited = append(waited, now.Sub(t.RunAt))
			}
		}
		if len(msgs) > 0 {
			if err := s.broker.Publish(ctx, msgs...); err != nil {
				return fmt.Errorf("republish: %w", err)
			}
			s.log.Info("republished overdue tasks whose message may be lost", zap.Int("tasks", len(msgs)))
			if err := s.republished(ctx, now, msgs, waited); err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
		}
		if len(due) < batch || len(msgs) == 0 {
			break
		}
	}
	if s.cfg.retention > 0 {
		for {
			n, err := s.store.Purge(ctx, now.Add(-s.cfg.retention), batch)
			if err != nil {
				return fmt.Errorf("purge: %w", err)
			}
			if n < batch {
				break
			}
		}
	}
	return nil
}
