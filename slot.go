package scheduler

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// slot is one of a worker's concurrency slots: a goroutine that runs
// deliveries one at a time, handlers included. A handler that ignores its
// context must not hold up a stopping worker, so if the worker stops hard
// (the drain timed out) while a handler runs, the slot's rescue, on
// another goroutine, hands the task back and releases the slot; the
// goroutine left in the handler drops its result and exits when the
// handler returns.
type slot struct {
	w     *Worker
	leave func() // marks the slot done in Run's WaitGroup (once)

	mu    sync.Mutex
	state slotState
	t     *Task // the task whose handler runs (state slotRunning)
	d     Delivery
	log   taskLogger
	start time.Time
}

type slotState int

const (
	slotIdle      slotState = iota
	slotRunning             // a handler runs on the slot's goroutine
	slotAbandoned           // the rescue handed the task back; the slot is gone
)

// newSlot adds a slot to wg; leave, deferred by the slot's goroutine,
// takes it out again.
func (w *Worker) newSlot(hard context.Context, wg *sync.WaitGroup) *slot {
	wg.Add(1)
	sl := &slot{w: w}
	stop := context.AfterFunc(hard, sl.rescue)
	done := sync.OnceFunc(wg.Done)
	sl.leave = func() {
		stop()
		done()
	}
	return sl
}

// rescue runs once hard ends: if a handler still runs, it hands the task
// back and releases the slot.
func (sl *slot) rescue() {
	sl.mu.Lock()
	if sl.state != slotRunning {
		sl.mu.Unlock()
		return
	}
	sl.state = slotAbandoned
	t, d, log, start := sl.t, sl.d, sl.log, sl.start
	sl.mu.Unlock()
	sl.w.handBack(t, d, &log, start)
	sl.leave()
}

// abandoned reports whether the rescue took the slot's task over.
func (sl *slot) abandoned() bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.state == slotAbandoned
}

// callHandler calls h, turning a panic into a *PanicError.
func callHandler(ctx context.Context, h HandlerFunc, t *Task) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, t)
}
