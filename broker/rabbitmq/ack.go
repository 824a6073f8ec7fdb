package rabbitmq

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// ackDelay bounds how long an acknowledgement waits for the ones of
// earlier deliveries, so that one frame (basic.ack with multiple set) can
// acknowledge them all.
const ackDelay = 2 * time.Millisecond

// acker coalesces the acknowledgements of one consuming channel. RabbitMQ
// numbers a channel's deliveries 1, 2, 3...; basic.ack with multiple set
// acknowledges every outstanding delivery up to its tag, which is safe
// only when each of them is to be acknowledged. So an ack that completes
// the run of settled deliveries from the oldest outstanding one is sent at
// once, with multiple set, covering the whole run; an ack of a delivery
// behind an unsettled older one waits up to ackDelay for it and is then
// sent on its own. Settling a delivery otherwise (requeue, our own
// dead-lettering) is written first and recorded after, so a multiple ack
// never overtakes it. Nothing is ever acknowledged before its Ack call.
//
// The acker also returns to the queue, after a delay, the deliveries the
// consumer could not settle itself (requeueAfter); closing it cancels those
// requeues, and closing the channel returns the messages instead.
type acker struct {
	ch  acknowledger
	log *zap.Logger

	mu       sync.Mutex
	head     uint64                 // oldest delivery tag not known to be settled
	settled  map[uint64]bool        // tags >= head: true to acknowledge, false settled already
	timer    *time.Timer            // sends the waiting acks one by one
	requeues map[uint64]*time.Timer // requeues not yet made, by tag
	running  sync.WaitGroup         // one per entry of requeues until its timer is stopped or has run
	closed   bool
}

// acknowledger is the part of *amqp.Channel the acker uses.
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

var _ acknowledger = (*amqp.Channel)(nil)

func newAcker(ch acknowledger, log *zap.Logger) *acker {
	return &acker{ch: ch, log: log, head: 1, settled: make(map[uint64]bool),
		requeues: make(map[uint64]*time.Timer)}
}

// ack acknowledges tag, now or within ackDelay. The error is that of a
// write made now.
func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || tag < a.head {
		return a.ch.Ack(tag, false)
	}
	a.settled[tag] = true
	if upTo, ok := a.advanceLocked(); ok {
		return a.ch.Ack(upTo, true)
	}
	if a.timer == nil {
		a.timer = time.AfterFunc(ackDelay, a.flush)
	}
	return nil
}

// done records that tag was settled by a write already made (a requeue, an
// ack of our own).
func (a *acker) done(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.doneLocked(tag)
}

// doneLocked is done with a.mu held.
func (a *acker) doneLocked(tag uint64) {
	if a.closed || tag < a.head {
		return
	}
	a.settled[tag] = false
	if upTo, ok := a.advanceLocked(); ok {
		if err := a.ch.Ack(upTo, true); err != nil {
			a.log.Debug("acknowledging deliveries failed; they come again", zap.Error(err))
		}
	}
}

// requeueAfter returns tag to its queue (basic.nack with requeue) after d,
// without waiting for it, and records it as settled once the nack is
// written. Until then tag stays unsettled and holds back the multiple acks
// of later deliveries, as any unsettled delivery does. Closing the acker
// first cancels the requeue.
func (a *acker) requeueAfter(tag uint64, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return // the channel is closing, which returns the message
	}
	a.running.Add(1)
	a.requeues[tag] = time.AfterFunc(d, func() { a.requeue(tag) })
}

// requeue makes the requeue of tag that requeueAfter scheduled, unless
// close cancelled it.
func (a *acker) requeue(tag uint64) {
	defer a.running.Done()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.requeues[tag]; !ok {
		return
	}
	delete(a.requeues, tag)
	if err := a.ch.Nack(tag, false, true); err != nil {
		a.log.Debug("requeueing a delivery failed; it comes again when its channel closes", zap.Error(err))
		return
	}
	a.doneLocked(tag)
}

// advanceLocked moves head past the settled run at its front and returns
// the last tag of that run that is to be acknowledged, if any.
func (a *acker) advanceLocked() (uint64, bool) {
	var upTo uint64
	for {
		want, ok := a.settled[a.head]
		if !ok {
			break
		}
		delete(a.settled, a.head)
		if want {
			upTo = a.head
		}
		a.head++
	}
	return upTo, upTo != 0
}

// flush sends the waiting acks one by one.
func (a *acker) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = nil
	for tag, want := range a.settled {
		if !want {
			continue
		}
		a.settled[tag] = false
		if err := a.ch.Ack(tag, false); err != nil {
			a.log.Debug("acknowledging a delivery failed; it comes again", zap.Error(err))
		}
	}
}

// close cancels the requeues not yet made (waiting for one being made),
// sends the waiting acks and makes later ones go out at once. Call it
// before closing the channel, which returns the cancelled requeues' messages.
func (a *acker) close() {
	a.mu.Lock()
	a.closed = true
	if a.timer != nil {
		a.timer.Stop()
	}
	for tag, t := range a.requeues {
		if t.Stop() {
			a.running.Done()
		}
		delete(a.requeues, tag)
	}
	a.mu.Unlock()
	a.running.Wait()
	a.flush()
}
