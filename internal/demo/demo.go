// Package demo holds the task handlers the examples run: demo.sleep,
// demo.flaky and demo.panic. They show success, retries and a panicking
// handler without any outside service.
//
//	worker, err := sched.NewWorker()
//	demo.Register(worker)
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dtsched/scheduler"
)

// The demo task types.
const (
	// TypeSleep sleeps for payload {"ms": n} milliseconds (0 to MaxSleep),
	// then succeeds with the result {"slept_ms": n}.
	TypeSleep = "demo.sleep"
	// TypeFlaky fails its first n attempts, for payload {"fail_first": n},
	// then succeeds with the result {"attempts": a}.
	TypeFlaky = "demo.flaky"
	// TypePanic panics on every attempt.
	TypePanic = "demo.panic"
)

// MaxSleep is the longest demo.sleep.
const MaxSleep = 10 * time.Minute

// Handlers returns the handlers of the demo task types, by type.
func Handlers() map[string]scheduler.HandlerFunc {
	return map[string]scheduler.HandlerFunc{TypeSleep: Sleep, TypeFlaky: Flaky, TypePanic: Panic}
}

// Register registers the handlers of the demo task types on w.
func Register(w *scheduler.Worker) {
	for typ, h := range Handlers() {
		w.Handle(typ, h)
	}
}

// Sleep handles demo.sleep. It returns early, failing the attempt, when its
// context ends. A malformed payload makes the task dead at once.
func Sleep(ctx context.Context, t *scheduler.Task) error {
	var p struct {
		MS int64 `json:"ms"`
	}
	if err := decode(t.Payload, &p); err != nil {
		return err
	}
	d := time.Duration(p.MS) * time.Millisecond
	if p.MS < 0 || d > MaxSleep {
		return fmt.Errorf("%w: demo.sleep: ms must be 0 to %d", scheduler.SkipRetry, MaxSleep.Milliseconds())
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	t.Result = fmt.Appendf(nil, `{"slept_ms":%d}`, p.MS)
	return nil
}

// Flaky handles demo.flaky: attempts 1 to fail_first fail, the next
// succeeds. A malformed payload makes the task dead at once.
func Flaky(_ context.Context, t *scheduler.Task) error {
	var p struct {
		FailFirst int `json:"fail_first"`
	}
	if err := decode(t.Payload, &p); err != nil {
		return err
	}
	if t.Attempt <= p.FailFirst {
		return fmt.Errorf("demo.flaky: attempt %d of the first %d fails", t.Attempt, p.FailFirst)
	}
	t.Result = fmt.Appendf(nil, `{"attempts":%d}`, t.Attempt)
	return nil
}

// Panic handles demo.panic: it panics. The worker turns the panic into a
// failed attempt and lives on.
func Panic(context.Context, *scheduler.Task) error {
	panic("demo.panic: panicking as asked")
}

// decode reads a JSON object payload strictly; an empty payload leaves v
// as it is. A payload that does not fit is no reason to retry.
func decode(payload []byte, v any) error {
	if len(bytes.TrimSpace(payload)) == 0 || bytes.Equal(payload, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: payload: %v", scheduler.SkipRetry, err)
	}
	return nil
}
