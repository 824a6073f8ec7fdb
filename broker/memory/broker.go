// Package membroker is an in-memory scheduler.Broker for a single process and
// for tests, with the semantics of the RabbitMQ broker: a priority queue per
// queue name (highest priority first, FIFO within a priority), delayed
// delivery where each message waits only for its own delay, a prefetch
// limit per consumer, redelivery of every unsettled message when its
// consumer closes, and a dead-letter list.
//
//	broker := membroker.New()
//	defer broker.Close()
//	sched, err := scheduler.New(broker, store)
//
// Waiting consumers block on condition variables; nothing polls.
package membroker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/dtsched/scheduler"
)

// Broker is an in-memory scheduler.Broker. All methods are safe for
// concurrent use.
type Broker struct {
	mu        sync.Mutex
	closed    bool
	queues    map[string]*queue
	timers    map[*time.Timer]struct{}
	dead      []DeadLetter
	consumers map[*consumer]struct{}
}

// DeadLetter is a message that was dead-lettered, with the reason given.
type DeadLetter struct {
	Message scheduler.Message
	Reason  string
}

var _ scheduler.Broker = (*Broker)(nil)

// New returns an empty broker.
func New() *Broker {
	return &Broker{
		queues:    make(map[string]*queue),
		timers:    make(map[*time.Timer]struct{}),
		consumers: make(map[*consumer]struct{}),
	}
}

// queue is one priority queue. Its mutex guards the ready set and the
// state of its consumers; cond wakes consumers when a message is ready or a prefetch
// slot frees.
type queue struct {
	name   string
	mu     sync.Mutex
	cond   *sync.Cond
	ready  readySet
	seq    uint64
	closed bool
}

type item struct {
	msg         scheduler.Message
	seq         uint64
	redelivered bool
}

// readySet holds the ready messages of a queue: a FIFO per priority, each
// in sequence order, so that taking the next message (highest priority
// first, then lowest sequence number) and adding a new one take constant
// time. A requeued message keeps its old sequence number and is put back
// at its place in its FIFO.
type readySet struct {
	fifos [scheduler.PriorityMax + 1]fifo
	n     int
}

// fifo is a queue of items in increasing sequence order: items[head:].
type fifo struct {
	items []item
	head  int
}

func (r *readySet) len() int { return r.n }

// push adds it, whose priority is within PriorityMin..PriorityMax.
func (r *readySet) push(it item) {
	f := &r.fifos[it.msg.Priority]
	live := f.items[f.head:]
	if len(live) == 0 || live[len(live)-1].seq < it.seq {
		f.items = append(f.items, it)
	} else {
		i, _ := slices.BinarySearchFunc(live, it.seq, func(x item, seq uint64) int { return cmp.Compare(x.seq, seq) })
		f.items = slices.Insert(f.items, f.head+i, it)
	}
	r.n++
}

// pop removes and returns the next item; the set must not be empty.
func (r *readySet) pop() item {
	for p := len(r.fifos) - 1; ; p-- {
		f := &r.fifos[p]
		if f.head == len(f.items) {
			continue
		}
		it := f.items[f.head]
		f.items[f.head] = item{}
		f.head++
		switch {
		case f.head == len(f.items):
			f.items, f.head = f.items[:0], 0
		case f.head >= 1024 && f.head*2 >= len(f.items):
			// Mostly consumed: move the rest to the front.
			n := copy(f.items, f.items[f.head:])
			clear(f.items[n:])
			f.items, f.head = f.items[:n], 0
		}
		r.n--
		return it
	}
}

// queue returns the queue named name, creating it; nil once closed.
func (b *Broker) queue(name string) (*queue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, scheduler.ErrClosed
	}
	q, ok := b.queues[name]
	if !ok {
		q = &queue{name: name}
		q.cond = sync.NewCond(&q.mu)
		b.queues[name] = q
	}
	return q, nil
}

// push makes it ready in q. A requeued message keeps its sequence number,
// so it goes back to where it was.
func (q *queue) push(it item) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if it.seq == 0 {
		q.seq++
		it.seq = q.seq
	}
	q.ready.push(it)
	q.mu.Unlock()
	q.cond.Broadcast()
}

// Publish implements scheduler.Broker. Delayed messages are held by timers
// and become ready when their delay ends.
func (b *Broker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Queue == "" {
			return fmt.Errorf("membroker: message for task %s has no queue", m.TaskID)
		}
	}
	// Consecutive ready messages of one queue are pushed under one lock.
	for i := 0; i < len(msgs); {
		q, err := b.queue(msgs[i].Queue)
		if err != nil {
			return err
		}
		if msgs[i].Delay > 0 {
			b.delay(q, clampPriority(msgs[i]))
			i++
			continue
		}
		j := i + 1
		for j < len(msgs) && msgs[j].Queue == msgs[i].Queue && msgs[j].Delay <= 0 {
			j++
		}
		q.pushAll(msgs[i:j])
		i = j
	}
	return nil
}

func clampPriority(m scheduler.Message) scheduler.Message {
	m.Priority = min(max(m.Priority, scheduler.PriorityMin), scheduler.PriorityMax)
	return m
}

// pushAll makes msgs ready in q.
func (q *queue) pushAll(msgs []scheduler.Message) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	for _, m := range msgs {
		q.seq++
		q.ready.push(item{msg: clampPriority(m), seq: q.seq})
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (b *Broker) delay(q *queue, m scheduler.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(m.Delay, func() {
		b.mu.Lock()
		_, live := b.timers[t]
		delete(b.timers, t)
		b.mu.Unlock()
		if live {
			q.push(item{msg: m})
		}
	})
	b.timers[t] = struct{}{}
}

// Consume implements scheduler.Broker.
func (b *Broker) Consume(ctx context.Context, queueName string, prefetch int) (scheduler.Consumer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if prefetch < 1 {
		return nil, fmt.Errorf("%w: prefetch %d, must be at least 1", scheduler.ErrInvalidOption, prefetch)
	}
	q, err := b.queue(queueName)
	if err != nil {
		return nil, err
	}
	c := &consumer{
		b: b, q: q, prefetch: prefetch,
		out:       make(chan scheduler.Delivery, prefetch),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		unsettled: make(map[*delivery]struct{}),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, scheduler.ErrClosed
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()
	go c.run()
	return c, nil
}

// Depth implements scheduler.Broker.
func (b *Broker) Depth(ctx context.Context, queueName string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	q, err := b.queue(queueName)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len(), nil
}

// Ping implements scheduler.Broker.
func (b *Broker) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return scheduler.ErrClosed
	}
	return nil
}

// maxDeadLetters bounds the dead-letter list; the oldest are dropped first.
const maxDeadLetters = 10000

// DeadLetters returns the messages dead-lettered so far, oldest first (at
// most the latest 10,000).
func (b *Broker) DeadLetters() []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]DeadLetter(nil), b.dead...)
}

// Close implements scheduler.Broker: it stops every consumer and drops
// every message. Calling it again returns ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return scheduler.ErrClosed
	}
	b.closed = true
	for t := range b.timers {
		t.Stop()
	}
	clear(b.timers)
	consumers := slices.Collect(maps.Keys(b.consumers))
	queues := b.queues
	b.mu.Unlock()
	for _, c := range consumers {
		c.close()
	}
	for _, q := range queues {
		q.mu.Lock()
		q.closed = true
		q.ready = readySet{}
		q.mu.Unlock()
	}
	return nil
}

type consumer struct {
	b         *Broker
	q         *queue
	prefetch  int
	out       chan scheduler.Delivery
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// guarded by q.mu
	closed    bool
	unsettled map[*delivery]struct{}
}

func (c *consumer) Deliveries() <-chan scheduler.Delivery { return c.out }

// run hands ready messages to the receiver, highest priority first, while
// fewer than prefetch deliveries are unsettled.
func (c *consumer) run() {
	defer close(c.done)
	defer close(c.out)
	q := c.q
	for {
		q.mu.Lock()
		for !c.closed && (len(c.unsettled) >= c.prefetch || q.ready.len() == 0) {
			q.cond.Wait()
		}
		if c.closed {
			q.mu.Unlock()
			return
		}
		it := q.ready.pop()
		d := &delivery{c: c, item: it}
		c.unsettled[d] = struct{}{}
		q.mu.Unlock()
		select {
		case c.out <- d:
		case <-c.stop:
			return // d is unsettled: close requeued it
		}
	}
}

// Close implements scheduler.Consumer.
func (c *consumer) Close() error {
	if !c.close() {
		return scheduler.ErrClosed
	}
	return nil
}

// close stops the consumer and requeues its unsettled deliveries; it
// reports whether this call closed it.
func (c *consumer) close() bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		q := c.q
		q.mu.Lock()
		c.closed = true
		for d := range c.unsettled {
			d.putBackLocked()
		}
		clear(c.unsettled)
		q.mu.Unlock()
		close(c.stop)
		q.cond.Broadcast()
		<-c.done
		// Deliveries handed to the buffer but not received were requeued
		// above: nobody may receive them from this consumer now.
		for range c.out {
		}
		c.b.mu.Lock()
		delete(c.b.consumers, c)
		c.b.mu.Unlock()
	})
	return first
}

type delivery struct {
	c    *consumer
	item item
}

var errSettled = errors.New("membroker: delivery already settled or its consumer closed")

func (d *delivery) Message() scheduler.Message { return d.item.msg }
func (d *delivery) Redelivered() bool          { return d.item.redelivered }

// ID is the queue's name and the message's sequence number, which it
// keeps when requeued.
func (d *delivery) ID() string { return d.c.q.name + "#" + strconv.FormatUint(d.item.seq, 10) }

// settle removes d from its consumer's unsettled set.
func (d *delivery) settle() error {
	q := d.c.q
	q.mu.Lock()
	err := d.settleLocked()
	q.mu.Unlock()
	return err
}

// settleLocked is settle with q.mu held.
func (d *delivery) settleLocked() error {
	if _, ok := d.c.unsettled[d]; !ok {
		return errSettled
	}
	delete(d.c.unsettled, d)
	d.c.q.cond.Broadcast() // a prefetch slot is free
	return nil
}

func (d *delivery) Ack(context.Context) error { return d.settle() }

// Requeue implements scheduler.Delivery. The message goes back to its
// place under the same lock that frees its prefetch slot, so the consumer
// cannot take a message behind it first.
func (d *delivery) Requeue(context.Context) error {
	q := d.c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := d.settleLocked(); err != nil {
		return err
	}
	d.putBackLocked()
	return nil
}

// putBackLocked makes d's message ready again, redelivered, unless its
// queue is closed; q.mu is held. It keeps its sequence number: back to
// its place.
func (d *delivery) putBackLocked() {
	if q := d.c.q; !q.closed {
		it := d.item
		it.redelivered = true
		q.ready.push(it)
	}
}

func (d *delivery) DeadLetter(_ context.Context, reason string) error {
	if err := d.settle(); err != nil {
		return err
	}
	b := d.c.b
	b.mu.Lock()
	if len(b.dead) == maxDeadLetters {
		b.dead = append(b.dead[:0], b.dead[1:]...)
	}
	b.dead = append(b.dead, DeadLetter{Message: d.item.msg, Reason: reason})
	b.mu.Unlock()
	return nil
}
