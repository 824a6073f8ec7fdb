package rabbitmq

import (
	"time"

	"go.uber.org/zap"
)

// Defaults of the options.
const (
	// DefaultPrefix starts the name of every exchange and queue the broker
	// declares.
	DefaultPrefix = "scheduler"
	// DefaultMaxPriority is the x-max-priority of work queues: scheduler
	// priorities 0..9 each get their own level.
	DefaultMaxPriority = 10
	// DefaultConfirmWindow is how many publishes may wait for their
	// confirm on one publishing channel.
	DefaultConfirmWindow = 256
	// DefaultPublishChannels is the number of confirm-mode channels that
	// concurrent Publish calls share.
	DefaultPublishChannels = 2
	// DefaultDeadLetterMaxLength bounds each dead-letter queue; the oldest
	// message is dropped when a new one would exceed it.
	DefaultDeadLetterMaxLength = 100_000
	// DefaultDeadLetterTTL is how long a dead-lettered message is kept.
	DefaultDeadLetterTTL = 14 * 24 * time.Hour
	// DefaultConnectionName is the connection_name client property, shown
	// by rabbitmqctl list_connections and the management UI.
	DefaultConnectionName = "scheduler"
	// DefaultHeartbeat is the AMQP heartbeat interval asked for: a silent
	// peer is declared dead after about two to three intervals.
	DefaultHeartbeat = 10 * time.Second
	// DefaultReconnectMin and DefaultReconnectMax bound the exponential
	// backoff between reconnection attempts.
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 10 * time.Second
)

// maxTTL is the largest x-message-ttl RabbitMQ accepts (2^32-1 ms).
const maxTTL = (1<<32 - 1) * time.Millisecond

type options struct {
	prefix          string
	maxPriority     int
	confirmWindow   int
	publishChannels int
	logger          *zap.Logger
	deadMaxLen      int
	deadTTL         time.Duration
	connName        string
	heartbeat       time.Duration
	backoffMin      time.Duration
	backoffMax      time.Duration
	transient       bool
}

func defaultOptions() options {
	return options{
		prefix:          DefaultPrefix,
		maxPriority:     DefaultMaxPriority,
		confirmWindow:   DefaultConfirmWindow,
		publishChannels: DefaultPublishChannels,
		logger:          zap.NewNop(),
		deadMaxLen:      DefaultDeadLetterMaxLength,
		deadTTL:         DefaultDeadLetterTTL,
		connName:        DefaultConnectionName,
		heartbeat:       DefaultHeartbeat,
		backoffMin:      DefaultReconnectMin,
		backoffMax:      DefaultReconnectMax,
	}
}

// Option configures a Broker.
type Option interface {
	apply(*options) error
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

// maxPrefixLen keeps every declared name under AMQP's 255-byte limit.
const maxPrefixLen = 100

// WithPrefix sets the prefix of every exchange and queue name: 1 to 100
// bytes of ASCII letters, digits and . _ - (no ':', which separates the
// parts of a name). Brokers with different prefixes share nothing.
// Defaults to DefaultPrefix.
func WithPrefix(prefix string) Option {
	return optionFunc(func(o *options) error {
		if prefix == "" || len(prefix) > maxPrefixLen {
			return optionErr("WithPrefix", "must be 1 to %d bytes, got %d", maxPrefixLen, len(prefix))
		}
		for i := 0; i < len(prefix); i++ {
			c := prefix[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return optionErr("WithPrefix", "character %q not allowed (letters, digits and ._-)", c)
			}
		}
		o.prefix = prefix
		return nil
	})
}

// WithMaxPriority sets x-max-priority of the work queues, 1 to 255.
// Message priorities above it are treated as it by RabbitMQ. It is fixed
// when a queue is first declared: declaring an existing queue with another
// value fails with PRECONDITION_FAILED. Defaults to DefaultMaxPriority (10,
// enough for scheduler.PriorityMin..PriorityMax).
func WithMaxPriority(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 || n > 255 {
			return optionErr("WithMaxPriority", "must be 1 to 255, got %d", n)
		}
		o.maxPriority = n
		return nil
	})
}

// WithTransientMessages publishes task messages as transient (delivery
// mode 1) instead of persistent: RabbitMQ keeps them in memory and confirms
// them without writing them to disk, which costs it about a third less CPU
// per message. The queues stay durable. The price: a RabbitMQ restart or
// node failure loses the messages waiting in the queues (a lost connection
// does not). The broker reports itself transient (scheduler.TransientBroker),
// so the Scheduler keeps every task in the store's outbox until it starts,
// and a worker's sweep publishes a lost task's message again once it is
// overdue by three sweep intervals: a restart delays tasks, it does not lose
// them. The task stays in the outbox after that too (so does one a stopping
// worker hands back), and is sent again if it is still waiting after about
// as long again as it had waited: a task that waits in a deep backlog gets
// a few extra messages, ever more rarely, which the attempt fence drops.
// Dead-lettered copies stay persistent. Defaults to persistent messages.
func WithTransientMessages() Option {
	return optionFunc(func(o *options) error {
		o.transient = true
		return nil
	})
}

// WithConfirmWindow sets how many publishes may await their publisher
// confirm on one channel at a time (pipelining), 1 to 65535. Defaults to
// DefaultConfirmWindow.
func WithConfirmWindow(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 || n > 65535 {
			return optionErr("WithConfirmWindow", "must be 1 to 65535, got %d", n)
		}
		o.confirmWindow = n
		return nil
	})
}

// WithPublishChannels sets how many confirm-mode channels concurrent
// Publish calls share, 1 to 64. Defaults to DefaultPublishChannels.
func WithPublishChannels(n int) Option {
	return optionFunc(func(o *options) error {
		if n < 1 || n > 64 {
			return optionErr("WithPublishChannels", "must be 1 to 64, got %d", n)
		}
		o.publishChannels = n
		return nil
	})
}

// WithLogger sets the logger for reconnections, dead-lettered garbage and
// other events nobody calls for. Defaults to zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) error {
		if l == nil {
			return optionErr("WithLogger", "must not be nil")
		}
		o.logger = l
		return nil
	})
}

// WithDeadLetterLimits bounds every dead-letter queue so that it cannot grow
// forever: at most maxLength messages (x-max-length; the oldest are dropped
// first) kept for at most ttl (x-message-ttl, whole milliseconds, up to
// about 49 days). Zero leaves that bound off, but at least one must be set.
// Like every queue argument they are fixed when the queue is first
// declared. Defaults to DefaultDeadLetterMaxLength and DefaultDeadLetterTTL.
func WithDeadLetterLimits(maxLength int, ttl time.Duration) Option {
	return optionFunc(func(o *options) error {
		switch {
		case maxLength < 0:
			return optionErr("WithDeadLetterLimits", "max length must not be negative, got %d", maxLength)
		case ttl < 0:
			return optionErr("WithDeadLetterLimits", "ttl must not be negative, got %s", ttl)
		case ttl > maxTTL:
			return optionErr("WithDeadLetterLimits", "ttl must be at most %s, got %s", maxTTL, ttl)
		case ttl%time.Millisecond != 0:
			return optionErr("WithDeadLetterLimits", "ttl must be whole milliseconds, got %s", ttl)
		case maxLength == 0 && ttl == 0:
			return optionErr("WithDeadLetterLimits", "set a max length, a ttl or both: an unbounded dead-letter queue is not allowed")
		}
		o.deadMaxLen, o.deadTTL = maxLength, ttl
		return nil
	})
}

// WithConnectionName sets the connection_name client property of the
// broker's connections, shown by rabbitmqctl list_connections and the
// management UI; the consuming connection's name has " (consume)"
// appended. Defaults to DefaultConnectionName.
func WithConnectionName(name string) Option {
	return optionFunc(func(o *options) error {
		if name == "" || len(name) > 255 {
			return optionErr("WithConnectionName", "must be 1 to 255 bytes, got %d", len(name))
		}
		o.connName = name
		return nil
	})
}

// WithHeartbeat sets the AMQP heartbeat interval asked of the server, 1 s
// to 10 min in whole seconds; the smaller of this and the server's wins. A
// peer that stops answering (a network cut without a reset) is noticed
// after about two to three intervals. Defaults to DefaultHeartbeat.
func WithHeartbeat(d time.Duration) Option {
	return optionFunc(func(o *options) error {
		if d < time.Second || d > 10*time.Minute || d%time.Second != 0 {
			return optionErr("WithHeartbeat", "must be 1s to 10m in whole seconds, got %s", d)
		}
		o.heartbeat = d
		return nil
	})
}

// WithReconnectBackoff sets the exponential backoff between reconnection
// attempts: it starts at min, doubles up to max, and is jittered by up to
// half. 1 ms <= min <= max <= 5 min. Defaults to DefaultReconnectMin and
// DefaultReconnectMax.
func WithReconnectBackoff(min, max time.Duration) Option {
	return optionFunc(func(o *options) error {
		if min < time.Millisecond || max < min || max > 5*time.Minute {
			return optionErr("WithReconnectBackoff", "need 1ms <= min <= max <= 5m, got min %s max %s", min, max)
		}
		o.backoffMin, o.backoffMax = min, max
		return nil
	})
}
