package scheduler

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error the package returns for these conditions
// satisfies errors.Is with one of them.
var (
	// ErrTaskNotFound: no task has the given ID (never stored, or removed by
	// retention).
	ErrTaskNotFound = errors.New("scheduler: task not found")
	// ErrDuplicateTask: a task with the same unique key has not finished yet.
	// The error is a *DuplicateError carrying that task's ID.
	ErrDuplicateTask = errors.New("scheduler: duplicate task")
	// ErrInvalidTask: a field of the task is out of its limits. The error is
	// a *ValidationError naming the field. Nothing was stored.
	ErrInvalidTask = errors.New("scheduler: invalid task")
	// ErrCorruptTask: the store holds something under the task's ID that
	// it cannot read as a task (something else wrote it). A worker
	// dead-letters the task's messages instead of retrying.
	ErrCorruptTask = errors.New("scheduler: unreadable task record")
	// ErrInvalidOption: a Scheduler, Worker or backend option is out of range.
	ErrInvalidOption = errors.New("scheduler: invalid option")
	// ErrClosed: the Scheduler, Worker or backend was closed.
	ErrClosed = errors.New("scheduler: closed")
	// ErrTaskFinished: the task is in a terminal state, which nothing but
	// Scheduler.Retry leaves.
	ErrTaskFinished = errors.New("scheduler: task already finished")
	// ErrStaleAttempt: a state change was refused because the task's attempt
	// or state moved on since the caller read it (another worker took the
	// task over, or it was canceled or handed back).
	ErrStaleAttempt = errors.New("scheduler: stale attempt")
	// ErrNotRetryable: Scheduler.Retry was asked to retry a task that is not
	// dead or canceled.
	ErrNotRetryable = errors.New("scheduler: task is not dead or canceled")
	// ErrNoHandler: a worker received a task whose type has no handler. The
	// attempt fails with it and is retried (another worker may have one).
	ErrNoHandler = errors.New("scheduler: no handler for task type")
	// ErrAlreadyRunning: Worker.Run was called while the worker runs.
	ErrAlreadyRunning = errors.New("scheduler: worker already running")
	// ErrShutdownTimeout: Worker.Run stopped before its in-flight tasks
	// finished and handed them back for redelivery.
	ErrShutdownTimeout = errors.New("scheduler: shutdown timeout: unfinished tasks handed back")
)

// SkipRetry, returned by a handler (alone or wrapped), makes the task dead at
// once without further retries.
//
//lint:ignore ST1012 a control value handlers return, named as in asynq, which users know
var SkipRetry = errors.New("scheduler: skip retry")

// ValidationError reports the field of a task or request that is invalid.
type ValidationError struct {
	Field  string // the field's JSON name, e.g. "priority"
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("scheduler: invalid task: %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidTask) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidTask }

func invalid(field, reason string) error { return &ValidationError{Field: field, Reason: reason} }

// DuplicateError reports that a task with the same unique key is unfinished.
type DuplicateError struct {
	UniqueKey  string
	ExistingID string // the unfinished task holding the key
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("scheduler: duplicate task: unique key %q is held by task %s", e.UniqueKey, e.ExistingID)
}

// Is makes errors.Is(err, ErrDuplicateTask) true.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicateTask }

// PanicError is the error of an attempt whose handler panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// SnoozeError, returned by a handler through Snooze, puts the task back to
// wait for the given time without counting the attempt as a failure.
type SnoozeError struct{ After time.Duration }

func (e *SnoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.After) }

// Snooze returns an error that, returned by a handler, reschedules the task
// to run again after d. The attempt is not a failure: the task keeps its full
// retry budget.
func Snooze(d time.Duration) error {
	if d < 0 {
		d = 0
	}
	return &SnoozeError{After: d}
}
