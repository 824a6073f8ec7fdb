package scheduler

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dtsched/scheduler/internal/jsonbytes"
)

// Priority orders waiting tasks of one queue: a higher priority runs first.
// Valid priorities are PriorityMin (0) to PriorityMax (9).
type Priority int

// Named priorities. Any value from PriorityMin to PriorityMax is valid.
const (
	PriorityMin     Priority = 0
	PriorityLow     Priority = 2
	PriorityDefault Priority = 5
	PriorityHigh    Priority = 7
	PriorityMax     Priority = 9
)

// State is where a task is in its life. Succeeded, dead and canceled are
// terminal: once a task is in one of them no message, duplicate or late
// worker moves it out again (only an explicit Scheduler.Retry does).
type State string

// The states of a task.
//
//	pending ──► running ──► succeeded
//	scheduled ─┘  │  ▲ └──► retrying ──► running ...
//	              │  │ └──► dead ──(Scheduler.Retry)──► pending
//	              │  └────── pending (handed back by a stopping worker)
//	              └──► canceled (from any non-terminal state)
const (
	StatePending   State = "pending"   // waiting in its queue
	StateScheduled State = "scheduled" // waiting for its RunAt time
	StateRunning   State = "running"   // a worker is executing it
	StateRetrying  State = "retrying"  // an attempt failed; waiting for the next one
	StateSucceeded State = "succeeded" // terminal: the handler returned nil
	StateDead      State = "dead"      // terminal: the last attempt failed
	StateCanceled  State = "canceled"  // terminal: canceled before it finished
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateScheduled, StateRunning, StateRetrying, StateSucceeded, StateDead, StateCanceled}

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateDead || s == StateCanceled
}

// Waiting reports whether s is a state in which the task waits for a worker.
func (s State) Waiting() bool {
	return s == StatePending || s == StateScheduled || s == StateRetrying
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Limits on task fields, checked by Task.Validate.
const (
	// MaxTypeLen is the longest task type, in bytes.
	MaxTypeLen = 128
	// MaxQueueLen is the longest queue name, in bytes.
	MaxQueueLen = 64
	// MaxIDLen is the longest task ID, in bytes.
	MaxIDLen = 64
	// MaxUniqueKeyLen is the longest unique key, in bytes.
	MaxUniqueKeyLen = 256
	// MaxRetriesLimit is the largest MaxRetries a task may have.
	MaxRetriesLimit = 1000
	// DefaultMaxPayload is the default payload size limit (1 MiB); see WithMaxPayload.
	DefaultMaxPayload = 1 << 20
	// DefaultQueue is the queue a task goes to when none is given.
	DefaultQueue = "default"
	// DefaultMaxRetries is the number of retries a task gets when none is given.
	DefaultMaxRetries = 3
)

// Task is one unit of work and its recorded state. The Scheduler fills in
// every field; a handler receives a copy and may set Result.
type Task struct {
	// ID identifies the task: a UUIDv7 string, URL-safe and sortable by
	// creation time.
	ID string
	// Type selects the handler. 1 to MaxTypeLen bytes of ASCII letters,
	// digits and . _ : -
	Type string
	// Queue is the named queue the task waits in. 1 to MaxQueueLen bytes of
	// ASCII letters, digits and . _ -; DefaultQueue when not given.
	Queue string
	// Payload is the handler's input. Any bytes; JSON is shown as JSON by
	// the HTTP API and stored compactly.
	Payload []byte
	// Priority orders waiting tasks within a queue, PriorityMin to PriorityMax.
	Priority Priority
	// State is the task's current state.
	State State
	// Attempt counts the executions started so far. An execution
	// interrupted by a crash counts too: a task that ran twice shows it here.
	Attempt int
	// MaxRetries is how many times a failed task is retried before it is
	// dead: a task runs at most MaxRetries+1 times unless retried by hand.
	MaxRetries int
	// Timeout bounds one attempt; it becomes the handler's context deadline.
	// Zero means no limit.
	Timeout time.Duration
	// RunAt is the earliest time the task may run.
	RunAt time.Time
	// CreatedAt is when the task was submitted.
	CreatedAt time.Time
	// StartedAt is when the latest attempt started.
	StartedAt time.Time
	// FinishedAt is when the task reached a terminal state.
	FinishedAt time.Time
	// LastError is the error of the latest failed attempt, or the reason the
	// task was canceled.
	LastError string
	// Result is what the handler stored on success (the handler sets it on
	// the *Task it receives).
	Result []byte
	// WorkerID is the worker running, or that last ran, the task.
	WorkerID string
	// UniqueKey, when set, keeps a second task with the same key from being
	// submitted until this one reaches a terminal state.
	UniqueKey string
	// Schedule is the name of the periodic schedule that submitted the task
	// (see Scheduler.RegisterPeriodic); empty for a task submitted directly.
	// Same characters and length as Type.
	Schedule string
	// Tick is the time the periodic task was due, in UTC; zero for a task
	// submitted directly. Each tick of a schedule is submitted once.
	Tick time.Time
}

// Clone returns a deep copy of t.
func (t *Task) Clone() *Task {
	c := *t
	c.Payload = cloneBytes(t.Payload)
	c.Result = cloneBytes(t.Result)
	return &c
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Validate checks every field of t against the documented limits and returns
// a *ValidationError (errors.Is(err, ErrInvalidTask)) naming the first field
// that is wrong. It does not check the payload size, which is a Scheduler
// setting (WithMaxPayload). Stores call it before writing anything.
func (t *Task) Validate() error {
	if err := ValidateID(t.ID); err != nil {
		return err
	}
	if err := validateType(t.Type); err != nil {
		return err
	}
	if err := validateQueue(t.Queue); err != nil {
		return err
	}
	if t.Priority < PriorityMin || t.Priority > PriorityMax {
		return invalid("priority", fmt.Sprintf("must be %d to %d, got %d", PriorityMin, PriorityMax, t.Priority))
	}
	if !t.State.Valid() {
		return invalid("state", fmt.Sprintf("unknown state %q", t.State))
	}
	if t.Attempt < 0 {
		return invalid("attempt", "must not be negative")
	}
	if t.MaxRetries < 0 {
		return invalid("max_retries", "must not be negative")
	}
	if t.MaxRetries > MaxRetriesLimit+t.Attempt {
		return invalid("max_retries", fmt.Sprintf("must be at most %d", MaxRetriesLimit))
	}
	if t.Timeout < 0 {
		return invalid("timeout", "must not be negative")
	}
	if t.CreatedAt.IsZero() {
		return invalid("created_at", "must be set")
	}
	if err := validateUniqueKey(t.UniqueKey); err != nil {
		return err
	}
	if t.Schedule != "" {
		return validateName("schedule", t.Schedule, MaxTypeLen, "._:-")
	}
	return nil
}

// ValidateNew checks a task about to be created: Validate, plus the state
// (pending or scheduled) and attempt (0) every new task has. Stores call it
// in Create.
func ValidateNew(t *Task) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.State != StatePending && t.State != StateScheduled {
		return invalid("state", fmt.Sprintf("a new task is pending or scheduled, not %s", t.State))
	}
	if t.Attempt != 0 {
		return invalid("attempt", "a new task has attempt 0")
	}
	return nil
}

// ValidateID reports whether id is a well-formed task ID: 1 to MaxIDLen
// bytes of ASCII letters, digits, '-' and '_'. Anything else (path
// separators, NUL, wildcards, spaces) is rejected with a *ValidationError for
// field "id", before any backend key is built from it.
func ValidateID(id string) error {
	if id == "" {
		return invalid("id", "must not be empty")
	}
	if len(id) > MaxIDLen {
		return invalid("id", fmt.Sprintf("longer than %d bytes", MaxIDLen))
	}
	for i := 0; i < len(id); i++ {
		if !idChars[id[i]] {
			return invalid("id", fmt.Sprintf("character %q not allowed", id[i]))
		}
	}
	return nil
}

// idChars marks the bytes a task ID may contain.
var idChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlnum(byte(c)) || c == '-' || c == '_'
	}
	return t
}()

func validateType(s string) error {
	return validateName("type", s, MaxTypeLen, "._:-")
}

func validateQueue(s string) error {
	return validateName("queue", s, MaxQueueLen, "._-")
}

func validateName(field, s string, max int, extra string) error {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	if len(s) > max {
		return invalid(field, fmt.Sprintf("longer than %d bytes", max))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum[c] && strings.IndexByte(extra, c) < 0 {
			return invalid(field, fmt.Sprintf("character %q not allowed (letters, digits and %s)", c, extra))
		}
	}
	return nil
}

func validateUniqueKey(k string) error {
	if len(k) > MaxUniqueKeyLen {
		return invalid("unique_key", fmt.Sprintf("longer than %d bytes", MaxUniqueKeyLen))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] == 0x7f {
			return invalid("unique_key", "control characters not allowed")
		}
	}
	return nil
}

// alnum marks the ASCII letters and digits.
var alnum = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlnum(byte(c))
	}
	return t
}()

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// taskJSON is the wire and storage form of a Task. A payload or result that is
// valid JSON is embedded as is; other bytes are base64 in the *_base64 field.
type taskJSON struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Queue         string          `json:"queue"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
	Priority      Priority        `json:"priority"`
	State         State           `json:"state"`
	Attempt       int             `json:"attempt"`
	MaxRetries    int             `json:"max_retries"`
	Timeout       string          `json:"timeout,omitempty"`
	RunAt         time.Time       `json:"run_at,omitzero"`
	CreatedAt     time.Time       `json:"created_at"`
	StartedAt     time.Time       `json:"started_at,omitzero"`
	FinishedAt    time.Time       `json:"finished_at,omitzero"`
	LastError     string          `json:"last_error,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
	ResultBase64  []byte          `json:"result_base64,omitempty"`
	WorkerID      string          `json:"worker_id,omitempty"`
	UniqueKey     string          `json:"unique_key,omitempty"`
	Schedule      string          `json:"schedule,omitempty"`
	Tick          time.Time       `json:"tick,omitzero"`
}

// MarshalJSON encodes t with snake_case fields. A payload (or result) that is
// valid JSON appears as a JSON value under "payload"; any other bytes appear
// base64-encoded under "payload_base64". Timeout is a Go duration string.
func (t Task) MarshalJSON() ([]byte, error) {
	j := taskJSON{
		ID: t.ID, Type: t.Type, Queue: t.Queue, Priority: t.Priority, State: t.State,
		Attempt: t.Attempt, MaxRetries: t.MaxRetries, RunAt: t.RunAt, CreatedAt: t.CreatedAt,
		StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, LastError: t.LastError,
		WorkerID: t.WorkerID, UniqueKey: t.UniqueKey, Schedule: t.Schedule, Tick: t.Tick,
	}
	if t.Timeout != 0 {
		j.Timeout = t.Timeout.String()
	}
	j.Payload, j.PayloadBase64 = splitBytes(t.Payload)
	j.Result, j.ResultBase64 = splitBytes(t.Result)
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (t *Task) UnmarshalJSON(b []byte) error {
	var j taskJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var timeout time.Duration
	if j.Timeout != "" {
		d, err := time.ParseDuration(j.Timeout)
		if err != nil {
			return fmt.Errorf("timeout: %w", err)
		}
		timeout = d
	}
	*t = Task{
		ID: j.ID, Type: j.Type, Queue: j.Queue, Priority: j.Priority, State: j.State,
		Attempt: j.Attempt, MaxRetries: j.MaxRetries, Timeout: timeout, RunAt: j.RunAt,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		LastError: j.LastError, WorkerID: j.WorkerID, UniqueKey: j.UniqueKey,
		Schedule: j.Schedule, Tick: j.Tick,
		Payload: joinBytes(j.Payload, j.PayloadBase64),
		Result:  joinBytes(j.Result, j.ResultBase64),
	}
	return nil
}

// splitBytes decides how b is encoded: embedded as a JSON value when that
// round-trips byte for byte through any encoding/json encoder (valid,
// compact, nothing an encoder would escape), base64 otherwise.
func splitBytes(b []byte) (json.RawMessage, []byte) {
	if len(b) == 0 {
		return nil, nil
	}
	if jsonbytes.Embeddable(b) {
		return json.RawMessage(b), nil
	}
	return nil, b
}

func joinBytes(raw json.RawMessage, b64 []byte) []byte {
	if len(raw) > 0 {
		return []byte(raw)
	}
	return b64
}
