package redisstore

import (
	"errors"
	"fmt"

	"github.com/dtsched/scheduler"
)

// CorruptRecordError reports a key of the store's namespace whose value is
// not a task record this store can read (not JSON, not a task, or not a
// string), typically because something else wrote it. errors.Is(err,
// scheduler.ErrCorruptTask) is true for it.
type CorruptRecordError struct {
	Key string // the Redis key
	Err error  // the decoding error, if any
}

func (e *CorruptRecordError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("redisstore: record %s is not a valid task record", e.Key)
	}
	return fmt.Sprintf("redisstore: record %s is not a valid task record: %v", e.Key, e.Err)
}

// Unwrap returns the decoding error.
func (e *CorruptRecordError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, scheduler.ErrCorruptTask) true.
func (e *CorruptRecordError) Is(target error) bool { return target == scheduler.ErrCorruptTask }

// errReplyShape reports a script reply this package does not understand.
var errReplyShape = errors.New("redisstore: unexpected script reply")

// statusError maps a script's status reply for the task id to the root
// package's sentinels. It is the one place where they are chosen.
func (s *Store) statusError(status, id string) error {
	switch status {
	case "notfound":
		return fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrTaskNotFound)
	case "finished":
		return fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrTaskFinished)
	case "stale":
		return fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrStaleAttempt)
	case "notretryable":
		return fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrNotRetryable)
	case "corrupt":
		return &CorruptRecordError{Key: s.taskKey(id)}
	}
	return fmt.Errorf("%w: status %q", errReplyShape, status)
}
