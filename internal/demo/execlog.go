package demo

import "time"

// ExecEvent is a line of the execution log that examples/distributed
// writes with -exec-log, and that its tests and the fault suite
// (internal/e2e) read: the start or the end of one run of a handler.
type ExecEvent struct {
	Ev      string `json:"ev"` // "start" or "end"
	ID      string `json:"id"`
	Type    string `json:"type"`
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
	Err     string `json:"err,omitempty"` // end only; empty on success
	// T is when the event happened, on the writing machine's clock: a
	// test compares it with the store's times (an end's T precedes the
	// FinishedAt of the outcome it led to).
	T time.Time `json:"t"`
}
