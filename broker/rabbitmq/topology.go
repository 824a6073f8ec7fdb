package rabbitmq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// delayLevels is the number of wait queues in the delay cascade: level k
// holds messages for 2^k seconds, so a delay of up to 2^delayLevels - 1
// seconds takes one pass.
const delayLevels = 22

// MaxCascadeDelay is the longest delay one pass through the delay cascade
// gives (2^22 - 1 s, about 48.5 days). A longer delay passes through more
// than once: the consumer that receives it early publishes it again for the
// time left instead of delivering it.
const MaxCascadeDelay = (1<<delayLevels - 1) * time.Second

// DelayPrecision is the granularity of delays: a delay is rounded up to
// whole seconds, and never delivered earlier than that.
const DelayPrecision = time.Second

// names builds the names of the exchanges and queues of one prefix.
type names struct{ prefix string }

func (n names) work(queue string) string { return n.prefix + ":q:" + queue }
func (n names) dead(queue string) string { return n.prefix + ":dead:" + queue }
func (n names) wait(level int) string    { return n.prefix + ":wait:" + strconv.Itoa(level) }
func (n names) delay(level int) string   { return n.prefix + ":delay:" + strconv.Itoa(level) }
func (n names) deliver() string          { return n.prefix + ":deliver" }

// next is where a message leaving level k of the cascade goes.
func (n names) next(level int) string {
	if level == 0 {
		return n.deliver()
	}
	return n.delay(level - 1)
}

// delayKey is the topic routing key of a message delayed by secs seconds for
// queue: one word per cascade level, most significant first ("1" when the
// message waits at that level), then the queue name.
func delayKey(secs int64, queue string) string {
	var sb strings.Builder
	sb.Grow(2*delayLevels + len(queue))
	for k := delayLevels - 1; k >= 0; k-- {
		if secs&(1<<k) != 0 {
			sb.WriteString("1.")
		} else {
			sb.WriteString("0.")
		}
	}
	sb.WriteString(queue)
	return sb.String()
}

// levelPattern is the binding key on level k's exchange that matches the
// messages whose bit k is bit.
func levelPattern(level int, bit byte) string {
	return strings.Repeat("*.", delayLevels-1-level) + string(bit) + ".#"
}

// deliverPattern binds queue's work queue to the deliver exchange.
func deliverPattern(queue string) string {
	return strings.Repeat("*.", delayLevels) + queue
}

// delaySeconds rounds d up to whole seconds, capped at the cascade's reach:
// any d beyond MaxCascadeDelay, however long, gives the cascade's longest
// delay and capped true.
func delaySeconds(d time.Duration) (secs int64, capped bool) {
	if d > MaxCascadeDelay {
		return int64(MaxCascadeDelay / time.Second), true
	}
	return int64((d + time.Second - 1) / time.Second), false
}

func (b *Broker) workArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeClassic,
		"x-max-priority":  b.opts.maxPriority,
	}
}

func (b *Broker) deadArgs() amqp.Table {
	t := amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeClassic,
		"x-queue-mode":    "lazy",
	}
	if b.opts.deadMaxLen > 0 {
		t[amqp.QueueMaxLenArg] = b.opts.deadMaxLen
		t[amqp.QueueOverflowArg] = amqp.QueueOverflowDropHead
	}
	if b.opts.deadTTL > 0 {
		t[amqp.QueueMessageTTLArg] = b.opts.deadTTL.Milliseconds()
	}
	return t
}

// declareQueue declares the work queue and dead-letter queue of queue and
// binds the work queue to the deliver exchange.
func (b *Broker) declareQueue(ch *amqp.Channel, queue string) error {
	n := b.names
	if err := ch.ExchangeDeclare(n.deliver(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", n.deliver(), err)
	}
	if _, err := ch.QueueDeclare(n.work(queue), true, false, false, false, b.workArgs()); err != nil {
		return fmt.Errorf("declare queue %s: %w", n.work(queue), err)
	}
	if _, err := ch.QueueDeclare(n.dead(queue), true, false, false, false, b.deadArgs()); err != nil {
		return fmt.Errorf("declare queue %s: %w", n.dead(queue), err)
	}
	if err := ch.QueueBind(n.work(queue), deliverPattern(queue), n.deliver(), false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", n.work(queue), err)
	}
	return nil
}

// declareCascade declares the delay cascade shared by every queue of the
// prefix (see the package documentation).
func (b *Broker) declareCascade(ch *amqp.Channel) error {
	n := b.names
	if err := ch.ExchangeDeclare(n.deliver(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", n.deliver(), err)
	}
	for k := 0; k < delayLevels; k++ {
		if err := ch.ExchangeDeclare(n.delay(k), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", n.delay(k), err)
		}
		args := amqp.Table{
			amqp.QueueTypeArg:        amqp.QueueTypeClassic,
			"x-queue-mode":           "lazy",
			amqp.QueueMessageTTLArg:  int64(1<<k) * 1000,
			"x-dead-letter-exchange": n.next(k),
		}
		if _, err := ch.QueueDeclare(n.wait(k), true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %s: %w", n.wait(k), err)
		}
		if err := ch.QueueBind(n.wait(k), levelPattern(k, '1'), n.delay(k), false, nil); err != nil {
			return fmt.Errorf("bind queue %s: %w", n.wait(k), err)
		}
		if err := ch.ExchangeBind(n.next(k), levelPattern(k, '0'), n.delay(k), false, nil); err != nil {
			return fmt.Errorf("bind exchange %s: %w", n.delay(k), err)
		}
	}
	return nil
}
