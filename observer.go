package scheduler

import "time"

// EventKind says what happened to a task.
type EventKind int

// The task events, in the order a task meets them.
const (
	EventSubmitted EventKind = iota + 1 // stored and published
	EventStarted                        // an attempt started; Event.Wait is the time it waited
	EventSucceeded                      // the handler returned nil; Event.Duration is the run time
	EventFailed                         // an attempt failed (Err); Retried or Dead follows
	EventRetried                        // a failed task will run again at Task.RunAt
	EventDead                           // the last attempt failed; the task is dead
	EventCanceled                       // the task was canceled
	// EventAborted: an attempt ended without a recorded outcome: the task
	// was canceled or taken over by another worker while it ran, its outcome
	// could not be stored, or a stopping worker handed it back. Every
	// EventStarted is followed by exactly one EventSucceeded, EventFailed,
	// EventSnoozed or EventAborted from the same worker.
	EventAborted
	// EventSnoozed: the handler returned Snooze; the task waits until
	// Task.RunAt without using up a retry. Event.Duration is the run time.
	EventSnoozed
)

var eventNames = [...]string{"", "submitted", "started", "succeeded", "failed", "retried", "dead", "canceled", "aborted", "snoozed"}

// String returns the event's lower-case name, e.g. "succeeded".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one thing that happened to a task.
type Event struct {
	Kind EventKind
	// Task is the task as it is after the event. Observers must not modify it.
	Task *Task
	// Err is the attempt's error for EventFailed and EventDead.
	Err error
	// Wait is, for EventStarted, how long the task waited: from its RunAt
	// (or submission) to the start.
	Wait time.Duration
	// Duration is, for EventSucceeded, EventFailed, EventSnoozed and
	// EventAborted, how long the handler ran.
	Duration time.Duration
	// WorkerID is the worker the event happened on, if any.
	WorkerID string
	// Time is when it happened.
	Time time.Time
}

// Observer receives task events, for metrics or auditing. Observe is
// called synchronously on the path of the task from many goroutines at
// once: it must be safe for concurrent use, fast, and must not block.
// Events of one task come from different goroutines (and processes): a
// worker may report EventStarted before the submitter reports
// EventSubmitted.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }
