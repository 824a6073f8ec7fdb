package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/demo"
)

// execLog records every handler execution in a file of its own, apart
// from the task store, so that a fault test can check the store against
// what really ran. Each event is one JSON line written by one write call
// on a file opened with O_APPEND: lines of several processes sharing the
// file do not interleave, and a line written is kept even if the process
// is killed right after.
type execLog struct {
	mu     sync.Mutex
	f      *os.File
	worker string
}

// openExecLog opens (creating it if need be) the log at path.
func openExecLog(path, worker string) (*execLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("-exec-log: %w", err)
	}
	return &execLog{f: f, worker: worker}, nil
}

func (l *execLog) Close() error { return l.f.Close() }

func (l *execLog) write(e demo.ExecEvent) {
	e.Worker = l.worker
	e.T = time.Now().UTC()
	line, err := json.Marshal(e)
	if err != nil {
		panic(err) // strings and ints always encode
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(line); err != nil {
		// The log is evidence for a test: better no process than a gap.
		panic(fmt.Sprintf("exec log: %v", err))
	}
}

// wrap returns h recording its start and its end, also when it panics; the
// panic goes on to the worker, which turns it into a failed attempt.
func (l *execLog) wrap(h scheduler.HandlerFunc) scheduler.HandlerFunc {
	return func(ctx context.Context, t *scheduler.Task) (err error) {
		e := demo.ExecEvent{ID: t.ID, Type: t.Type, Attempt: t.Attempt}
		l.write(withEv(e, "start", ""))
		defer func() {
			if r := recover(); r != nil {
				l.write(withEv(e, "end", fmt.Sprint("panic: ", r)))
				panic(r)
			}
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			l.write(withEv(e, "end", msg))
		}()
		return h(ctx, t)
	}
}

func withEv(e demo.ExecEvent, ev, err string) demo.ExecEvent {
	e.Ev, e.Err = ev, err
	return e
}
