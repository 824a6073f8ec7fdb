package redisstore

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// Defaults of the options.
const (
	// DefaultPrefix is the key prefix used when WithPrefix is not given.
	DefaultPrefix = "sched"
	// DefaultReplayWindow is how long a changing call remembers that it
	// applied when WithReplayWindow is not given.
	DefaultReplayWindow = time.Minute
)

// maxPrefixLen bounds WithPrefix.
const maxPrefixLen = 64

// Option configures a Store.
type Option interface {
	apply(*options) error
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

type options struct {
	prefix string
	replay time.Duration
	log    *zap.Logger
}

// WithPrefix sets the namespace of every key the store writes: keys are
// "{prefix}:...", so the namespace is one Redis Cluster hash slot and
// stores with different prefixes share a server without seeing each other.
// 1 to 64 bytes of ASCII letters, digits and . _ : -. Defaults to "sched".
func WithPrefix(prefix string) Option {
	return optionFunc(func(o *options) error {
		if prefix == "" || len(prefix) > maxPrefixLen {
			return fmt.Errorf("redisstore: %w: prefix must be 1 to %d bytes", scheduler.ErrInvalidOption, maxPrefixLen)
		}
		for i := 0; i < len(prefix); i++ {
			c := prefix[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
				return fmt.Errorf("redisstore: %w: prefix character %q not allowed (letters, digits and ._:-)", scheduler.ErrInvalidOption, c)
			}
		}
		o.prefix = prefix
		return nil
	})
}

// WithReplayWindow sets how long a changing call (Start, Finish, Cancel,
// Retry, Purge, Heartbeat) remembers in Redis that it applied, so
// that go-redis resending it after a lost reply does not apply it twice.
// It must cover the client's whole retry span (MaxRetries times the dial,
// write and read timeouts plus backoff); each call keeps a marker of about
// 100 bytes for this long. At least one second. Defaults to
// DefaultReplayWindow (one minute).
func WithReplayWindow(d time.Duration) Option {
	return optionFunc(func(o *options) error {
		if d < time.Second {
			return fmt.Errorf("redisstore: %w: replay window must be at least 1s, got %s", scheduler.ErrInvalidOption, d)
		}
		o.replay = d
		return nil
	})
}

// WithLogger sets the logger for events no caller sees, such as a corrupt
// record removed by Purge. Defaults to zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) error {
		if l == nil {
			return fmt.Errorf("redisstore: %w: nil logger", scheduler.ErrInvalidOption)
		}
		o.log = l
		return nil
	})
}
