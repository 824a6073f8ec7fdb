package scheduler_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every condition a test waits for.
const wait = 10 * time.Second

// fastRetry retries at once-ish, keeping tests quick.
func fastRetry(int, error) time.Duration { return 5 * time.Millisecond }

type env struct {
	sched  *scheduler.Scheduler
	broker *membroker.Broker
	store  *memstore.Store
}

func newEnv(t *testing.T, opts ...scheduler.Option) *env {
	t.Helper()
	b, s := newMemBroker(t), memstore.New()
	opts = append([]scheduler.Option{scheduler.WithRetryPolicy(fastRetry)}, opts...)
	return &env{sched: newScheduler(t, b, s, opts...), broker: b, store: s}
}

// newMemBroker returns a memory broker closed when the test ends.
func newMemBroker(t *testing.T) *membroker.Broker {
	b := membroker.New()
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newScheduler returns a Scheduler on b and s, closed when the test ends
// (before b, if b came from newMemBroker first).
func newScheduler(t *testing.T, b scheduler.Broker, s scheduler.Store, opts ...scheduler.Option) *scheduler.Scheduler {
	t.Helper()
	sched, err := scheduler.New(b, s, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sched.Close()) })
	return sched
}

// running is a worker started by startWorker.
type running struct {
	w    *scheduler.Worker
	stop context.CancelFunc
	done chan struct{} // closed when Run returned
	err  error         // what Run returned
}

// Stop ends the worker's Run and returns its result.
func (r *running) Stop(t *testing.T) error {
	t.Helper()
	r.stop()
	return r.wait(t)
}

func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(wait):
		t.Fatal("worker did not stop")
		return nil
	}
}

// startWorker runs a worker with handlers until the test ends.
func startWorker(t *testing.T, sched *scheduler.Scheduler, handlers map[string]scheduler.HandlerFunc, opts ...scheduler.WorkerOption) *running {
	t.Helper()
	w, err := sched.NewWorker(opts...)
	require.NoError(t, err)
	for typ, h := range handlers {
		w.Handle(typ, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, stop: cancel, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { _ = r.Stop(t) })
	return r
}

// waitState waits until task id is in state st and returns it.
func waitState(t *testing.T, sched *scheduler.Scheduler, id string, st scheduler.State) *scheduler.Task {
	t.Helper()
	var last *scheduler.Task
	require.Eventually(t, func() bool {
		got, err := sched.Status(context.Background(), id)
		if err != nil {
			return false
		}
		last = got
		return got.State == st
	}, wait, time.Millisecond, "task %s never reached %s (last seen: %+v)", id, st, last)
	return last
}

func submit(t *testing.T, sched *scheduler.Scheduler, typ string, payload string, opts ...scheduler.SubmitOption) string {
	t.Helper()
	id, err := sched.Submit(context.Background(), typ, []byte(payload), opts...)
	require.NoError(t, err)
	return id
}

func ok(context.Context, *scheduler.Task) error { return nil }

// recorder is an Observer keeping every event.
type recorder struct {
	mu     sync.Mutex
	events []scheduler.Event
}

func (r *recorder) Observe(e scheduler.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Task.ID == id {
			out = append(out, e.Kind.String())
		}
	}
	return out
}

// faultyBroker fails Publish while fail is set; after, if set, runs once
// the real publish has happened.
type faultyBroker struct {
	scheduler.Broker
	mu    sync.Mutex
	fail  error
	after func()
}

func (f *faultyBroker) set(err error, after func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.after = err, after
}

func (f *faultyBroker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	f.mu.Lock()
	fail, after := f.fail, f.after
	f.mu.Unlock()
	if fail == nil {
		return f.Broker.Publish(ctx, msgs...)
	}
	if after != nil {
		if err := f.Broker.Publish(ctx, msgs...); err != nil {
			return err
		}
		after()
	}
	return fail
}

// faultyStore fails Create while fail is set.
type faultyStore struct {
	scheduler.Store
	fail error
}

func (f *faultyStore) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	return f.Store.Create(ctx, tasks)
}

var errInjected = errors.New("injected fault")
