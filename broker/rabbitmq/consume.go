package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// Consume starts consuming queue (declaring it on first use) on a channel
// of its own with basic.qos prefetch and manual acknowledgements. ctx
// bounds the first subscription only. The consumer survives reconnections:
// after a lost connection, or a channel the server closed (consumer_timeout,
// a deleted queue), it subscribes again and Deliveries goes on; deliveries
// received on the old channel can no longer be settled (ErrDeliveryLost)
// and come again with Redelivered true.
//
// A message that is not a valid scheduler message is never handed out: it
// is copied to the queue's dead-letter queue with the reason, acked and
// logged. If the copy cannot be published, the message is returned to the
// queue after a backoff and tried again.
func (b *Broker) Consume(ctx context.Context, queue string, prefetch int) (scheduler.Consumer, error) {
	if err := validateMessage(scheduler.Message{TaskID: "consume", Queue: queue}); err != nil {
		return nil, fmt.Errorf("rabbitmq: consume: %w", err)
	}
	if prefetch < 1 || prefetch > 65535 {
		return nil, fmt.Errorf("rabbitmq: consume: prefetch must be 1 to 65535, got %d: %w", prefetch, scheduler.ErrInvalidOption)
	}
	c := &consumer{
		b:        b,
		queue:    queue,
		prefetch: prefetch,
		out:      make(chan scheduler.Delivery),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		log:      b.log.With(zap.String("queue", queue)),
	}
	c.baseCtx, c.cancel = context.WithCancel(b.baseCtx)
	for {
		s, err := b.waitSession(ctx, nil)
		if err != nil {
			c.cancel()
			return nil, err
		}
		ch, dels, err := c.subscribe(s)
		if err != nil {
			if !s.alive() {
				continue // the connection died meanwhile: wait for the next
			}
			c.cancel()
			return nil, b.mapErr("consume "+queue, err)
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = ch.Close()
			c.cancel()
			return nil, fmt.Errorf("rabbitmq: consume: %w", scheduler.ErrClosed)
		}
		b.consumers[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go c.run(s, ch, dels)
		return c, nil
	}
}

type consumer struct {
	b        *Broker
	queue    string
	prefetch int
	out      chan scheduler.Delivery
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when run has returned
	closed   atomic.Bool
	baseCtx  context.Context // canceled by Close and the broker's Close
	cancel   context.CancelFunc
	log      *zap.Logger
	tagSeq   atomic.Uint64
	current  atomic.Pointer[amqp.Channel] // the channel consuming now
	failures int                          // own settlements failed in a row; run's goroutine only
}

func (c *consumer) Deliveries() <-chan scheduler.Delivery { return c.out }

// Close cancels the subscription by closing the consumer's channel: every
// unsettled delivery, handed out or not, returns to the queue and comes
// again with Redelivered true. Settling such a delivery afterwards fails
// with scheduler.ErrClosed. Deliveries is closed when Close returns.
func (c *consumer) Close() error {
	first := false
	c.stopOnce.Do(func() {
		first = true
		c.closed.Store(true)
		close(c.stop)
		c.cancel()
	})
	<-c.done
	c.b.mu.Lock()
	delete(c.b.consumers, c)
	c.b.mu.Unlock()
	if !first {
		return fmt.Errorf("rabbitmq: consumer: %w", scheduler.ErrClosed)
	}
	return nil
}

// subscribe opens a channel on s and starts consuming.
func (c *consumer) subscribe(s *session) (*amqp.Channel, <-chan amqp.Delivery, error) {
	if err := s.ensure(c.queue); err != nil {
		return nil, nil, err
	}
	ch, err := s.cconn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, nil, err
	}
	tag := c.b.opts.connName + "-" + c.b.idPrefix + strconv.FormatUint(c.tagSeq.Add(1), 10)
	dels, err := ch.Consume(c.b.names.work(c.queue), tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		if isNotFound(err) {
			s.forget(c.queue) // deleted behind our back: declare again
		}
		return nil, nil, err
	}
	return ch, dels, nil
}

// run forwards deliveries and subscribes again whenever the channel is lost,
// until Close or the broker's Close.
func (c *consumer) run(s *session, ch *amqp.Channel, dels <-chan amqp.Delivery) {
	defer c.b.wg.Done()
	defer close(c.done)
	defer close(c.out)
	for {
		c.current.Store(ch)
		closeErrs := ch.NotifyClose(make(chan *amqp.Error, 1))
		gone := make(chan struct{})
		acks := newAcker(ch, c.log)
		lostErr := c.forward(ch, acks, dels, gone)
		close(gone)
		acks.close() // acks still waiting go out before the channel closes
		if c.closed.Load() || c.b.isClosed() {
			_ = ch.Close() // requeues every unsettled delivery
			return
		}
		var reason error = lostErr
		select {
		case e, ok := <-closeErrs:
			if ok && e != nil {
				reason = e
			}
		default:
		}
		_ = ch.Close()
		// A channel lost with its connection is the supervisor's to count;
		// one the server closed on a live connection is counted here.
		channelOnly := s.alive()
		c.log.Warn("consumer channel lost; subscribing again", zap.Bool("connection_alive", channelOnly), zap.Error(reason))
		var ok bool
		s, ch, dels, ok = c.resubscribe()
		if !ok {
			return
		}
		if channelOnly {
			c.b.reconnects.Add(1)
		}
		c.log.Info("consumer subscribed again")
	}
}

// resubscribe waits for a connection and subscribes, with backoff, until it
// works or the consumer is stopped.
func (c *consumer) resubscribe() (*session, *amqp.Channel, <-chan amqp.Delivery, bool) {
	for attempt := 0; ; attempt++ {
		s, err := c.b.waitSession(context.Background(), c.stop)
		if err != nil {
			return nil, nil, nil, false
		}
		ch, dels, err := c.subscribe(s)
		if err == nil {
			return s, ch, dels, true
		}
		c.log.Warn("subscribe failed", zap.Int("attempt", attempt+1), zap.Error(err))
		if !c.b.sleep(c.b.backoff(attempt), c.stop) {
			return nil, nil, nil, false
		}
	}
}

// forward hands deliveries out until the channel's delivery stream ends or
// the consumer is stopped.
func (c *consumer) forward(ch *amqp.Channel, acks *acker, dels <-chan amqp.Delivery, gone <-chan struct{}) error {
	for {
		var ad amqp.Delivery
		select {
		case <-c.stop:
			return nil
		case <-c.b.closing:
			return nil
		case d, ok := <-dels:
			if !ok {
				return errors.New("delivery stream ended")
			}
			ad = d
		}
		if ch.IsClosed() {
			// Prefetched from a channel that has died: it could not be
			// settled, and RabbitMQ delivers it again.
			continue
		}
		m, err := decode(&ad, c.queue)
		if err != nil {
			c.reject(ch, acks, &ad, "undecodable: "+err.Error())
			continue
		}
		if nb, ok := notBefore(&ad); ok && time.Until(nb) > 0 {
			c.redelay(ch, acks, &ad, m, nb)
			continue
		}
		d := &delivery{c: c, ch: ch, acks: acks, gone: gone, tag: ad.DeliveryTag, msg: m, redelivered: ad.Redelivered, raw: ad}
		select {
		case c.out <- d:
		case <-c.stop:
			return nil
		case <-c.b.closing:
			return nil
		}
	}
}

// settleTimeout bounds the publishes the consumer makes on its own
// (dead-lettering garbage, delaying again).
const settleTimeout = 30 * time.Second

func (c *consumer) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.baseCtx, settleTimeout)
}

// reject moves a message that is not a scheduler message to the dead-letter
// queue and acks it. If the copy cannot be published, the message goes back
// to its queue after a backoff (requeueLater).
func (c *consumer) reject(ch *amqp.Channel, acks *acker, ad *amqp.Delivery, reason string) {
	c.log.Warn("dead-lettering an undecodable message", zap.String("reason", reason),
		zap.String("message_id", ad.MessageId), zap.Int("body_bytes", len(ad.Body)))
	ctx, cancel := c.opCtx()
	defer cancel()
	if err := c.b.deadLetter(ctx, c.queue, ad, reason); err != nil {
		wait := c.requeueLater(acks, ad.DeliveryTag)
		c.log.Error("dead-lettering failed; the message goes back to its queue",
			zap.Duration("requeue_in", wait), zap.Error(err))
		return
	}
	c.failures = 0
	c.ackOwn(ch, acks, ad.DeliveryTag, "dead-lettering")
}

// requeueLater hands back to the queue a delivery the consumer failed to
// settle itself, after the broker's backoff for the number of such failures
// in a row (so that a lasting failure does not loop hot), and returns that
// backoff. It does not wait: the acker nacks the delivery when the backoff
// ends, unless the channel closes first, which returns the message too.
// Left unsettled, the delivery would hold a prefetch slot, and the acker's
// head, for as long as the channel lives.
func (c *consumer) requeueLater(acks *acker, tag uint64) time.Duration {
	wait := c.b.backoff(c.failures)
	c.failures++
	acks.requeueAfter(tag, wait)
	return wait
}

// redelay publishes a message delivered before its not-before time (a delay
// beyond MaxCascadeDelay) again for the time left, then acks it. If that
// publish fails, the message goes back to its queue after a backoff
// (requeueLater).
func (c *consumer) redelay(ch *amqp.Channel, acks *acker, ad *amqp.Delivery, m scheduler.Message, nb time.Time) {
	m.Delay = time.Until(nb)
	ctx, cancel := c.opCtx()
	defer cancel()
	o := c.b.encode(m, time.Now())
	if _, capped := delaySeconds(m.Delay); capped {
		o.pub.Headers = amqp.Table{headerNotBefore: nb.UnixMilli()}
	}
	if err := c.b.publishOutgoing(ctx, o); err != nil {
		wait := c.requeueLater(acks, ad.DeliveryTag)
		c.log.Warn("delaying again failed; the message goes back to its queue",
			zap.Duration("requeue_in", wait), zap.Error(err))
		return
	}
	c.failures = 0
	c.ackOwn(ch, acks, ad.DeliveryTag, "delaying again")
}

// ackOwn acks at once a delivery the consumer settled itself, after what
// it did with the message, and records it with the channel's acker.
func (c *consumer) ackOwn(ch *amqp.Channel, acks *acker, tag uint64, after string) {
	if err := ch.Ack(tag, false); err != nil {
		c.log.Warn("ack after "+after+" failed", zap.Error(err))
		return
	}
	acks.done(tag)
}

// delivery is a scheduler.Delivery of a RabbitMQ message.
type delivery struct {
	c           *consumer
	ch          *amqp.Channel
	acks        *acker          // the channel's ack coalescer
	gone        <-chan struct{} // closed when ch stops consuming
	tag         uint64
	msg         scheduler.Message
	redelivered bool
	raw         amqp.Delivery // for the dead-letter copy
	state       atomic.Int32  // 0 unsettled, 1 settling or settled
}

func (d *delivery) Message() scheduler.Message { return d.msg }
func (d *delivery) Redelivered() bool          { return d.redelivered }

// ID is the message-id property, which Publish sets anew for every copy it
// sends and RabbitMQ keeps on redelivery (and through the delay cascade).
func (d *delivery) ID() string { return d.raw.MessageId }

// begin claims the right to settle d.
func (d *delivery) begin(ctx context.Context, op string) error {
	if !d.state.CompareAndSwap(0, 1) {
		return fmt.Errorf("rabbitmq: %s: %w", op, ErrAlreadySettled)
	}
	if err := ctx.Err(); err != nil {
		d.state.Store(0)
		return fmt.Errorf("rabbitmq: %s: %w", op, err)
	}
	return d.usable(op)
}

// usable reports why d's channel cannot settle it any more.
func (d *delivery) usable(op string) error {
	if d.c.closed.Load() || d.c.b.isClosed() {
		return fmt.Errorf("rabbitmq: %s: consumer closed, the message returned to its queue: %w (%w)", op, scheduler.ErrClosed, ErrDeliveryLost)
	}
	if d.ch.IsClosed() {
		return fmt.Errorf("rabbitmq: %s: %w", op, ErrDeliveryLost)
	}
	return nil
}

func (d *delivery) settleErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if uerr := d.usable(op); uerr != nil {
		return fmt.Errorf("%w: %w", uerr, err)
	}
	if errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("rabbitmq: %s: %w: %w", op, ErrDeliveryLost, err)
	}
	return fmt.Errorf("rabbitmq: %s: %w", op, err)
}

// Ack removes the message from its queue. The acknowledgement may wait a
// moment (at most 2 ms, or until the consumer closes) for those of earlier
// deliveries, to go out with them in one frame; if the connection is lost
// meanwhile, the message comes again (with Redelivered true).
func (d *delivery) Ack(ctx context.Context) error {
	if err := d.begin(ctx, "ack"); err != nil {
		return err
	}
	return d.settleErr("ack", d.acks.ack(d.tag))
}

// Requeue returns the message to its queue (basic.nack with requeue): it is
// delivered again, by priority, with Redelivered true.
func (d *delivery) Requeue(ctx context.Context) error {
	if err := d.begin(ctx, "requeue"); err != nil {
		return err
	}
	if err := d.ch.Nack(d.tag, false, true); err != nil {
		return d.settleErr("requeue", err)
	}
	d.acks.done(d.tag)
	return nil
}

// DeadLetter publishes a copy of the message to the queue's dead-letter
// queue with reason in a header (and waits for its confirm), then acks the
// original. If the copy cannot be published the delivery stays unsettled
// and the error is returned.
func (d *delivery) DeadLetter(ctx context.Context, reason string) error {
	if err := d.begin(ctx, "dead-letter"); err != nil {
		return err
	}
	// Give up on the copy as soon as the channel is gone: the original
	// could not be acked any more and comes back anyway.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := d.c.b.deadLetter(ctx, d.c.queue, &d.raw, reason); err != nil {
		if uerr := d.usable("dead-letter"); uerr != nil {
			return fmt.Errorf("%w: %w", uerr, err)
		}
		d.state.Store(0)
		return err
	}
	return d.settleErr("dead-letter", d.acks.ack(d.tag))
}

// deadLetter publishes a copy of ad to queue's dead-letter queue.
func (b *Broker) deadLetter(ctx context.Context, queue string, ad *amqp.Delivery, reason string) error {
	headers := amqp.Table{}
	for k, v := range ad.Headers {
		headers[k] = v
	}
	if len(reason) > 4096 {
		reason = reason[:4096]
	}
	headers[headerReason] = reason
	headers[headerQueue] = queue
	if ad.MessageId != "" {
		headers[headerOriginalID] = ad.MessageId
	}
	o := outgoing{
		queue: queue,
		key:   b.names.dead(queue),
		pub: amqp.Publishing{
			Headers:         headers,
			ContentType:     ad.ContentType,
			ContentEncoding: ad.ContentEncoding,
			DeliveryMode:    amqp.Persistent,
			Priority:        ad.Priority,
			CorrelationId:   ad.CorrelationId,
			Type:            ad.Type,
			AppId:           ad.AppId,
			Body:            ad.Body,
		},
	}
	if err := headers.Validate(); err != nil {
		// A header amqp091-go cannot send again: keep ours only.
		o.pub.Headers = amqp.Table{headerReason: reason, headerQueue: queue, headerOriginalID: ad.MessageId}
	}
	if err := b.publishOutgoing(ctx, o); err != nil {
		return fmt.Errorf("rabbitmq: dead-letter: %w", err)
	}
	return nil
}

// publishOutgoing publishes one prepared message with confirms, sending it
// again after a lost channel like Publish.
func (b *Broker) publishOutgoing(ctx context.Context, o outgoing) error {
	errs, err := b.publishAll(ctx, []outgoing{o})
	if err != nil {
		return err
	}
	return errs[0]
}
