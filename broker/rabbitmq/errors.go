package rabbitmq

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dtsched/scheduler"
)

// Errors returned by the broker besides the root package's sentinels.
var (
	// ErrUnroutable: RabbitMQ returned a mandatory message because no queue
	// was bound for it (typically its queue was deleted behind the broker's
	// back). The broker forgets the queue's declaration so that the next
	// Publish declares it again.
	ErrUnroutable = errors.New("rabbitmq: message unroutable")
	// ErrNacked: RabbitMQ refused responsibility for a message (a negative
	// publisher confirm, e.g. an internal error of the queue).
	ErrNacked = errors.New("rabbitmq: message nacked by the server")
	// ErrDeliveryLost: the channel a delivery arrived on is gone (connection
	// lost, channel closed by the server or by Consumer.Close), so it can no
	// longer be settled. RabbitMQ has returned the message to its queue and
	// delivers it again, with Redelivered true.
	ErrDeliveryLost = errors.New("rabbitmq: delivery's channel is gone; the message will be redelivered")
	// ErrAlreadySettled: Ack, Requeue or DeadLetter was called on a delivery
	// that was already settled.
	ErrAlreadySettled = errors.New("rabbitmq: delivery already settled")
)

// OptionError reports an invalid option or constructor argument. It
// satisfies errors.Is(err, scheduler.ErrInvalidOption).
type OptionError struct {
	Option string // the option's name, e.g. "WithPrefix"
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("rabbitmq: invalid option: %s: %s", e.Option, e.Reason)
}

// Is makes errors.Is(err, scheduler.ErrInvalidOption) true.
func (e *OptionError) Is(target error) bool { return target == scheduler.ErrInvalidOption }

func optionErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Reason: fmt.Sprintf(format, args...)}
}

// errRetry marks a publish that did not get a confirm because its channel or
// connection went away; it is sent again on the next channel. connLost
// tells a lost connection (sent again after the reconnection, as often as
// needed within the caller's context) from a channel the server closed on a
// live connection (sent again a few times only).
type errRetry struct {
	cause    error
	connLost bool
}

func (e *errRetry) Error() string { return "rabbitmq: publish not confirmed: " + e.cause.Error() }
func (e *errRetry) Unwrap() error { return e.cause }

var errChannelGone = errors.New("channel closed before the confirm arrived")

// isNotFound reports whether err is RabbitMQ's 404 NOT_FOUND channel error.
func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// mapErr wraps err from amqp091-go with the operation, mapping a closed
// connection or channel after Close to scheduler.ErrClosed.
func (b *Broker) mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if b.isClosed() && !errors.Is(err, scheduler.ErrClosed) {
		return fmt.Errorf("rabbitmq: %s: %w (%w)", op, scheduler.ErrClosed, err)
	}
	return fmt.Errorf("rabbitmq: %s: %w", op, err)
}
