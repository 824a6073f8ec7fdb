package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dtsched/scheduler"
)

// Bounds on sending a message again: after a channel the server closed on
// a live connection, and after lost connections.
const (
	maxChannelResends = 4
	maxConnResends    = 50
)

// Publish durably enqueues msgs: each is declared (first use of its queue),
// published persistent and mandatory on one of the shared confirm-mode
// channels, and Publish returns nil only after every publisher confirm
// arrived with no basic.return. Messages are pipelined: many may await
// their confirm at once.
//
// A message whose connection dies before its confirm is sent again once the
// broker has reconnected (Publish waits for that within ctx), so a message
// may be enqueued twice; consumers tolerate that. On error some messages may
// have been enqueued: Publish reports the first failure and how many
// failed. An unroutable message fails with ErrUnroutable, a negative
// confirm with ErrNacked, an invalid message with scheduler.ErrInvalidTask
// before anything is sent, a closed broker with scheduler.ErrClosed.
func (b *Broker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	if b.isClosed() {
		return fmt.Errorf("rabbitmq: publish: %w", scheduler.ErrClosed)
	}
	for i := range msgs {
		if err := validateMessage(msgs[i]); err != nil {
			return fmt.Errorf("rabbitmq: publish: message %d: %w", i, err)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	outs := make([]outgoing, len(msgs))
	for i := range msgs {
		outs[i] = b.encode(msgs[i], now)
	}
	errs, err := b.publishAll(ctx, outs)
	if err != nil {
		return err
	}
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	switch {
	case first == nil:
		return nil
	case failed == 1:
		return fmt.Errorf("rabbitmq: publish: %w", first)
	}
	return fmt.Errorf("rabbitmq: publish: %d of %d messages failed, first: %w", failed, len(msgs), first)
}

// publishAll publishes outs and sends again what lost channels left
// unconfirmed. It returns the outcome of each message, or an error when ctx
// ends or the broker closes first.
func (b *Broker) publishAll(ctx context.Context, outs []outgoing) ([]error, error) {
	errs := make([]error, len(outs))
	chanTries := make([]int, len(outs))
	connTries := make([]int, len(outs))
	todo := make([]int, len(outs))
	for i := range todo {
		todo[i] = i
	}
	for round := 0; len(todo) > 0; round++ {
		if err := b.publishRound(ctx, outs, todo, errs); err != nil {
			return nil, err
		}
		next := todo[:0]
		lost := false
		for _, i := range todo {
			var r *errRetry
			if !errors.As(errs[i], &r) {
				continue
			}
			if r.connLost {
				lost = true
				connTries[i]++
				if connTries[i] <= maxConnResends {
					next = append(next, i)
				}
			} else {
				chanTries[i]++
				if chanTries[i] <= maxChannelResends {
					next = append(next, i)
				}
			}
		}
		todo = next
		if lost && len(todo) > 0 {
			// Give the client time to notice the broken connection and the
			// supervisor time to replace it, rather than spending the
			// resends on the same dead socket.
			select {
			case <-time.After(min(10*time.Millisecond<<min(round, 6), 500*time.Millisecond)):
			case <-ctx.Done():
				return nil, fmt.Errorf("rabbitmq: publish: %w", ctx.Err())
			}
		}
	}
	return errs, nil
}

// publishRound sends outs[todo] and waits for their confirms, recording each
// outcome in errs. It returns an error only when ctx ends or the broker
// closes before every outcome is known.
func (b *Broker) publishRound(ctx context.Context, outs []outgoing, todo []int, errs []error) error {
	bt := &batch{errs: errs, left: len(todo), done: make(chan struct{})}
	// One channel for the whole round: RabbitMQ keeps the order of one
	// channel's publishes, so a call's messages of one priority are
	// delivered in the order given. Calls take turns over the channels.
	lane := b.rr.Add(1)
	for _, i := range todo {
		errs[i] = nil
		err := b.publishOne(ctx, &outs[i], lane, func(err error) { bt.complete(i, err) })
		if err != nil {
			var r *errRetry
			if !errors.As(err, &r) {
				bt.abandon()
				return err
			}
			bt.complete(i, err)
		}
	}
	select {
	case <-bt.done:
		return nil
	case <-ctx.Done():
		bt.abandon()
		return fmt.Errorf("rabbitmq: publish: waiting for confirms: %w", ctx.Err())
	}
}

// publishOne sends o on publishing channel lane (modulo their number) of
// the current connection; done receives its outcome unless publishOne
// returns an error.
func (b *Broker) publishOne(ctx context.Context, o *outgoing, lane uint64, done func(error)) error {
	s, err := b.waitSession(ctx, nil)
	if err != nil {
		return err
	}
	if err := s.ensure(o.queue); err != nil {
		return b.retryIfLost(s, "declare "+o.queue, err)
	}
	if o.delayed {
		if err := s.ensureCascade(); err != nil {
			return b.retryIfLost(s, "declare delay cascade", err)
		}
	}
	pc, err := s.pub(int(lane % uint64(len(s.pubs))))
	if err != nil {
		return b.retryIfLost(s, "open publishing channel", err)
	}
	return pc.send(ctx, s, o, b.nextID(), done)
}

// retryIfLost marks err retryable when the connection is gone (the next
// round waits for a new one).
func (b *Broker) retryIfLost(s *session, op string, err error) error {
	if !s.alive() || errors.Is(err, amqp.ErrClosed) {
		return &errRetry{cause: fmt.Errorf("%s: %w", op, err), connLost: true}
	}
	return b.mapErr(op, err)
}

func (b *Broker) nextID() string {
	return b.idPrefix + strconv.FormatUint(b.seq.Add(1), 36)
}

// batch collects the outcomes of one publish round.
type batch struct {
	mu        sync.Mutex
	errs      []error
	left      int
	done      chan struct{}
	abandoned bool
}

func (bt *batch) complete(i int, err error) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if bt.abandoned {
		return
	}
	bt.errs[i] = err
	bt.left--
	if bt.left == 0 {
		close(bt.done)
	}
}

// abandon stops recording outcomes: the caller has returned.
func (bt *batch) abandon() {
	bt.mu.Lock()
	bt.abandoned = true
	bt.mu.Unlock()
}

// pubChannel is a confirm-mode channel shared by concurrent publishers.
// Confirms and returns are read by one goroutine (pump) from an unbuffered
// return channel and a confirm channel: amqp091-go hands a basic.return to
// pump before it dispatches the basic.ack of the same message, and pump
// handles one before reading the next, so a returned message is always
// known as such when its ack is seen.
type pubChannel struct {
	ch    *amqp.Channel
	slots chan struct{} // confirm window
	dead  chan struct{} // closed when the channel is gone

	sendLock chan struct{} // held while publishing: keeps delivery tags in publish order

	mu      sync.Mutex
	gone    bool
	next    uint64 // delivery tag of the last publish
	pending map[uint64]*pubRecord
	byID    map[string]*pubRecord
}

type pubRecord struct {
	id       string
	queue    string
	returned *amqp.Return
	done     func(error)
}

func (s *session) pub(i int) (*pubChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc := s.pubs[i]; pc != nil {
		select {
		case <-pc.dead:
		default:
			return pc, nil
		}
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	window := s.b.opts.confirmWindow
	pc := &pubChannel{
		ch:       ch,
		sendLock: make(chan struct{}, 1),
		slots:    make(chan struct{}, window),
		dead:     make(chan struct{}),
		pending:  make(map[uint64]*pubRecord, window),
		byID:     make(map[string]*pubRecord, window),
	}
	returns := ch.NotifyReturn(make(chan amqp.Return))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))
	s.b.wg.Add(1)
	go func() {
		defer s.b.wg.Done()
		pc.pump(s, returns, confirms)
	}()
	s.pubs[i] = pc
	return pc, nil
}

// send publishes o; done gets the outcome. It waits for room in the confirm
// window.
func (pc *pubChannel) send(ctx context.Context, s *session, o *outgoing, id string, done func(error)) error {
	select {
	case pc.slots <- struct{}{}:
	case <-pc.dead:
		return &errRetry{cause: errChannelGone, connLost: !s.alive()}
	case <-ctx.Done():
		return fmt.Errorf("rabbitmq: publish: %w", ctx.Err())
	}
	rec := &pubRecord{id: id, queue: o.queue, done: done}
	pub := o.pub
	pub.MessageId = id
	pub.Timestamp = time.Now()

	// A publish blocks while RabbitMQ blocks the connection (a resource
	// alarm); the others wait here, within their ctx.
	select {
	case pc.sendLock <- struct{}{}:
	case <-pc.dead:
		<-pc.slots
		return &errRetry{cause: errChannelGone, connLost: !s.alive()}
	case <-ctx.Done():
		<-pc.slots
		return fmt.Errorf("rabbitmq: publish: %w", ctx.Err())
	}
	defer func() { <-pc.sendLock }()
	pc.mu.Lock()
	if pc.gone {
		pc.mu.Unlock()
		return &errRetry{cause: errChannelGone, connLost: !s.alive()}
	}
	pc.next++
	tag := pc.next
	pc.pending[tag] = rec
	pc.byID[id] = rec
	pc.mu.Unlock()

	if err := pc.ch.Publish(o.exchange, o.key, true, false, pub); err != nil {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		if pc.pending[tag] != rec {
			return nil // pump already failed it when the channel died
		}
		delete(pc.pending, tag)
		delete(pc.byID, id)
		pc.next--
		select {
		case <-pc.slots:
		default:
		}
		return &errRetry{cause: err, connLost: !s.alive() || isNetErr(err)}
	}
	return nil
}

// isNetErr reports whether err comes from the connection's socket rather
// than from the server: the connection is broken even if the client has
// not noticed yet.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, amqp.ErrClosed)
}

// pump settles publishes as their returns and confirms arrive, and fails
// the outstanding ones when the channel dies.
func (pc *pubChannel) pump(s *session, returns <-chan amqp.Return, confirms <-chan amqp.Confirmation) {
	for confirms != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.mu.Lock()
			if rec := pc.byID[r.MessageId]; rec != nil {
				rec.returned = &r
			}
			pc.mu.Unlock()
		case c, ok := <-confirms:
			if !ok {
				confirms = nil
				continue
			}
			pc.mu.Lock()
			rec := pc.pending[c.DeliveryTag]
			delete(pc.pending, c.DeliveryTag)
			if rec != nil {
				delete(pc.byID, rec.id)
			}
			pc.mu.Unlock()
			if rec == nil {
				continue
			}
			<-pc.slots
			switch {
			case !c.Ack:
				rec.done(ErrNacked)
			case rec.returned != nil:
				s.forget(rec.queue)
				rec.done(fmt.Errorf("%w: %d %s (exchange %q, routing key %q)", ErrUnroutable,
					rec.returned.ReplyCode, rec.returned.ReplyText, rec.returned.Exchange, rec.returned.RoutingKey))
			default:
				rec.done(nil)
			}
		}
	}
	pc.mu.Lock()
	pc.gone = true
	lost := pc.pending
	pc.pending, pc.byID = nil, nil
	pc.mu.Unlock()
	close(pc.dead)
	connLost := !s.alive()
	for _, rec := range lost {
		rec.done(&errRetry{cause: errChannelGone, connLost: connLost})
	}
}
