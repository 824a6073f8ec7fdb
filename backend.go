package scheduler

import (
	"context"
	"time"
)

// Message is what travels through a Broker: a pointer to a stored task plus
// what the broker needs to order and route it. The task itself lives in the
// Store.
type Message struct {
	// TaskID is the task to run.
	TaskID string
	// Attempt is the task's attempt count when the message was published.
	// Store.Start accepts the message only while the task's attempt still
	// equals it, which makes duplicate and stale messages harmless.
	Attempt int
	// Queue is the queue the message is published to.
	Queue string
	// Priority orders ready messages of one queue, highest first.
	Priority Priority
	// Delay holds the message back for at least this long after publishing.
	// A broker may deliver a little later (its documented precision) but
	// never earlier; a short delay is never held up behind a longer one.
	Delay time.Duration
}

// Broker moves messages from publishers to consumers: a durable priority
// queue per queue name, delayed delivery, redelivery of unacknowledged
// messages and a dead-letter place.
//
// All methods are safe for concurrent use. Queues are created on first use.
type Broker interface {
	// Publish durably enqueues msgs. It returns nil only when the broker has
	// taken responsibility for every message (for RabbitMQ: the publisher
	// confirm arrived). On error some messages may have been enqueued and
	// others not; publishing the same message twice is allowed (consumers
	// see both, and the attempt fence drops the second).
	Publish(ctx context.Context, msgs ...Message) error
	// Consume starts delivering messages of queue. At most prefetch
	// deliveries are unsettled (received and not yet acked, requeued or
	// dead-lettered) at a time; prefetch must be at least 1. Messages
	// waiting in the broker are delivered highest priority first; a
	// delivery already handed out (prefetched) is not reordered. ctx bounds
	// only the setup; the consumer lives until Close.
	Consume(ctx context.Context, queue string, prefetch int) (Consumer, error)
	// Depth returns the number of messages of queue ready for delivery (not
	// delayed, not unacknowledged).
	Depth(ctx context.Context, queue string) (int, error)
	// Ping checks that the broker can be reached.
	Ping(ctx context.Context) error
	// Close releases the broker's resources. Unsettled deliveries are
	// returned to their queues. Further calls fail with ErrClosed.
	Close() error
}

// TransientBroker is implemented by a Broker that can be told to trade
// durability for speed: when Transient reports true, a confirmed message
// lives in the broker's memory only, and a restart of the broker loses it.
// The Scheduler then keeps every task in the store's outbox until the task
// starts (as it always does for delayed messages), so that a worker's sweep
// publishes the message of a task that stays overdue again: a broker
// restart delays such tasks instead of losing them.
type TransientBroker interface {
	Broker
	// Transient reports whether confirmed messages may be lost by a
	// restart of the broker.
	Transient() bool
}

// Consumer receives the messages of one queue.
// Deliveries and Close are safe for concurrent use.
type Consumer interface {
	// Deliveries returns the channel deliveries arrive on. It is closed when
	// the consumer is closed (or its broker is).
	Deliveries() <-chan Delivery
	// Close stops the consumer. Every delivery not yet settled, received
	// or not, returns to its queue and is delivered again with
	// Redelivered() true, exactly as if the consuming process had died.
	// Settle in-flight deliveries first to avoid that.
	Close() error
}

// Delivery is one received message. Exactly one of Ack, Requeue and
// DeadLetter settles it; after that the others return an error. A delivery
// whose connection was lost cannot be settled (the error says so) and the
// broker delivers the message again. Safe for concurrent use.
type Delivery interface {
	// Message returns the delivered message.
	Message() Message
	// ID identifies this copy of the message: the same on every delivery
	// of it, different for every publish, even of the same Message. Empty
	// when the broker cannot tell (a message published by something else).
	ID() string
	// Redelivered reports whether the message was delivered before and not
	// settled (its consumer went away, or it was requeued).
	Redelivered() bool
	// Ack removes the message from the broker.
	Ack(ctx context.Context) error
	// Requeue returns the message to its queue for redelivery, with
	// Redelivered() true.
	Requeue(ctx context.Context) error
	// DeadLetter moves the message to the broker's dead-letter place,
	// recording reason.
	DeadLetter(ctx context.Context, reason string) error
}

// Store keeps tasks and their state: the single source of truth for what a
// task is and where it is in its life. Every state change is atomic and
// fenced: terminal states never change (except through Retry), and a change
// based on an old attempt is refused with ErrStaleAttempt.
//
// Times are passed in by the caller so that every backend agrees on them;
// durations (TTLs) are measured by the store. All methods are safe for
// concurrent use, including from many processes sharing one backend.
//
// A task "in the outbox" needs a broker message that is not known to have
// arrived: it was created or is due for a retry, and its message is not
// confirmed yet (or is delayed and its task has not started). Workers
// republish outbox entries that stay overdue, so a crash between a store
// write and its publish, or a delayed message lost by the broker, delays a
// task but never loses it.
type Store interface {
	// Create stores new tasks (state pending or scheduled, attempt 0) and
	// puts them in the outbox. Every task is validated first; if any is
	// invalid nothing is stored and the error names it. The returned slice
	// has one entry per task: nil when stored, a *DuplicateError when its
	// unique key is held by an unfinished task or its ID is taken (that task
	// is not stored; an existing task is never overwritten).
	// A non-nil error means the call failed as a whole; tasks may or may not
	// be stored. The store may keep the tasks' Payload slices: the caller
	// must not modify them afterwards.
	Create(ctx context.Context, tasks []*Task) ([]error, error)
	// Get returns the task with id, or ErrTaskNotFound. Every method taking
	// an id rejects a malformed one (ValidateID) before touching the backend.
	Get(ctx context.Context, id string) (*Task, error)
	// Start moves a task to running for the delivery of a message, and
	// returns the task as it is now. It succeeds when the task waits
	// (pending, scheduled or retrying) with Attempt == p.Attempt; the store
	// then remembers p.Attempt as the attempt of the message driving the
	// task. For a redelivered message it also succeeds when the task is
	// running or pending (handed back) and the message is the one that
	// drives it: p.Attempt is that message's attempt and p.MessageID its ID
	// (unless either ID is empty). The previous holder lost that message,
	// so the new one takes over (however many times that happens); a
	// redelivered duplicate of the message never does. Attempt then
	// grows by one, which fences the previous holder out, and the task
	// leaves the outbox (its message evidently arrived). Otherwise Start
	// fails with ErrTaskFinished (terminal) or ErrStaleAttempt (the message
	// is a stale or duplicate one).
	Start(ctx context.Context, id string, p StartParams) (*Task, error)
	// Finish records the outcome of a running attempt. It succeeds only
	// while the task is running with Attempt == p.Attempt; otherwise it
	// fails with ErrTaskFinished or ErrStaleAttempt and changes nothing.
	// Moving to retrying or scheduled puts the task in the outbox, due at
	// p.RunAt, and so does moving to pending (handing the task back) when
	// p.RunAt is set; moving to a terminal state releases its unique key.
	Finish(ctx context.Context, id string, p FinishParams) (*Task, error)
	// Cancel moves a task in any non-terminal state to canceled, releases
	// its unique key and takes it out of the outbox. A running task's
	// worker learns of it from its next Heartbeat. With
	// p.OnlyUnstarted it succeeds only for a task never started (attempt 0,
	// pending or scheduled), else ErrStaleAttempt. A finished task gives
	// ErrTaskFinished.
	Cancel(ctx context.Context, id string, p CancelParams) (*Task, error)
	// Retry moves a dead or canceled task back to pending with a fresh
	// retry budget (MaxRetries grows by the attempts already made) and puts
	// it in the outbox, due now. Other states give ErrNotRetryable. The
	// unique key is not taken again.
	Retry(ctx context.Context, id string, now time.Time) (*Task, error)
	// Outbox returns up to limit tasks of the outbox that were due (RunAt
	// of a created or retrying task, the time of a Retry) before `before`,
	// earliest first.
	Outbox(ctx context.Context, before time.Time, limit int) ([]*Task, error)
	// Published takes the tasks of confirmed, undelayed msgs out of the
	// outbox: each only while the task still waits at the message's
	// Attempt, so a late confirmation never removes the entry of a later
	// attempt. Unknown tasks are ignored. (A delayed message stays in the
	// outbox until its task starts: if the broker loses it, the sweep
	// publishes the task again once it is overdue.)
	Published(ctx context.Context, msgs ...Message) error
	// Republished keeps the tasks of msgs, which the sweep published again
	// for a broker that may lose confirmed messages (TransientBroker), in
	// the outbox, due at due instead of when they were: each only while it
	// is there and the task still waits at the message's Attempt. The sweep
	// then publishes a task once more only if it stays overdue past due, in
	// case the broker loses this message too. Unknown tasks are ignored.
	Republished(ctx context.Context, due time.Time, msgs ...Message) error
	// List returns tasks matching f, newest first, one page at a time.
	List(ctx context.Context, f ListFilter) (Page, error)
	// Counts returns the number of stored tasks in each state; states with
	// no task may be missing.
	Counts(ctx context.Context) (map[State]int64, error)
	// Purge deletes up to limit terminal tasks that finished before
	// `before`, record and index entries together, and returns how many it
	// deleted.
	Purge(ctx context.Context, before time.Time, limit int) (int, error)
	// Heartbeat records that a worker is alive for ttl and returns the IDs
	// of tasks running on it that were canceled since its last heartbeat.
	Heartbeat(ctx context.Context, w WorkerInfo, ttl time.Duration) ([]string, error)
	// RemoveWorker forgets a worker that stopped.
	RemoveWorker(ctx context.Context, id string) error
	// Workers returns the workers whose last heartbeat has not expired.
	Workers(ctx context.Context) ([]WorkerInfo, error)
	// Claim atomically takes key for ttl and reports whether this caller got
	// it: exactly one of any number of concurrent callers does, until the
	// ttl ends. Used to run periodic duties once across many processes.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Ping checks that the store can be reached.
	Ping(ctx context.Context) error
}

// StartParams describe the message a worker is starting a task for.
type StartParams struct {
	Attempt     int       // Message.Attempt of the delivery
	Redelivered bool      // Delivery.Redelivered
	MessageID   string    // Delivery.ID
	WorkerID    string    // the worker taking the task
	Now         time.Time // becomes StartedAt
}

// FinishParams describe the outcome of a running attempt.
type FinishParams struct {
	// Attempt is the attempt that ran (Task.Attempt as Start returned it).
	Attempt int
	// State is the new state: succeeded, dead, retrying, scheduled (the
	// handler snoozed) or pending (a stopping worker handed the task back).
	State State
	// Error becomes LastError when not empty.
	Error string
	// Result is stored on success.
	Result []byte
	// RunAt is when a retrying or scheduled task runs next; for a task
	// handed back (pending), set, it puts the task in the outbox, due then.
	RunAt time.Time
	// AddRetries grows MaxRetries (a snoozed attempt does not use up the
	// retry budget).
	AddRetries int
	// Now becomes FinishedAt for terminal states.
	Now time.Time
}

// CancelParams describe a cancellation.
type CancelParams struct {
	Reason        string    // becomes LastError
	OnlyUnstarted bool      // cancel only a task that never started
	Now           time.Time // becomes FinishedAt
}

// ListFilter selects tasks for Store.List. Empty fields match everything.
type ListFilter struct {
	State  State
	Type   string
	Queue  string
	Limit  int    // page size; 0 means 100, at most 1000
	Cursor string // Page.Next of the previous page; empty for the first page
}

// Page is one page of a listing.
type Page struct {
	Tasks []*Task
	Next  string // cursor of the next page; empty when this page is the last
}

// WorkerInfo describes a worker node, as recorded by its heartbeats.
type WorkerInfo struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	InFlight    int       `json:"in_flight"`
	StartedAt   time.Time `json:"started_at"`
	LastBeat    time.Time `json:"last_beat"`
}

// List page sizes.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// PageSize returns f.Limit bounded to 1..MaxListLimit, DefaultListLimit when
// it is 0 or negative.
func (f ListFilter) PageSize() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}
