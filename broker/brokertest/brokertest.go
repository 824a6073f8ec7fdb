// Package brokertest is the conformance suite for scheduler.Broker
// implementations. Every broker of this module runs it, and a third-party
// broker proves itself the same way:
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T) scheduler.Broker {
//			return newIsolatedBroker(t) // own queues; cleaned up with t.Cleanup
//		})
//	}
//
// The factory is called once per subtest and subtests run in parallel, so
// the brokers it returns must not share queues (a fresh instance, or a
// unique name prefix on a shared server). A subtest may close its broker;
// the factory's cleanup must tolerate that.
package brokertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// Run runs the conformance suite against the brokers newBroker returns.
func Run(t *testing.T, newBroker func(t *testing.T) scheduler.Broker) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b scheduler.Broker)
	}{
		{"RoundTrip", testRoundTrip},
		{"PriorityOrder", testPriorityOrder},
		{"PriorityUnderBacklog", testPriorityUnderBacklog},
		{"Delay", testDelay},
		{"Requeue", testRequeue},
		{"RedeliverOnClose", testRedeliverOnClose},
		{"DeliveryID", testDeliveryID},
		{"Prefetch", testPrefetch},
		{"DeadLetter", testDeadLetter},
		{"SettleOnce", testSettleOnce},
		{"Depth", testDepth},
		{"QueuesAreSeparate", testQueuesAreSeparate},
		{"CompetingConsumers", testCompetingConsumers},
		{"Close", testClose},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newBroker(t))
		})
	}
}

// wait bounds every receive: generous for a loaded machine, short enough
// to fail a broken broker quickly.
const wait = 20 * time.Second

// quiet is how long a test watches for a delivery that must not come.
const quiet = 300 * time.Millisecond

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func msg(t *testing.T, queue string, p scheduler.Priority) scheduler.Message {
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return scheduler.Message{TaskID: id.String(), Queue: queue, Priority: p}
}

func publish(t *testing.T, b scheduler.Broker, msgs ...scheduler.Message) {
	t.Helper()
	require.NoError(t, b.Publish(ctxFor(t), msgs...))
}

func consume(t *testing.T, b scheduler.Broker, queue string, prefetch int) scheduler.Consumer {
	t.Helper()
	c, err := b.Consume(ctxFor(t), queue, prefetch)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func receive(t *testing.T, c scheduler.Consumer) scheduler.Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		require.True(t, ok, "deliveries closed")
		return d
	case <-time.After(wait):
		t.Fatalf("no delivery within %s", wait)
		return nil
	}
}

func ack(t *testing.T, d scheduler.Delivery) {
	t.Helper()
	require.NoError(t, d.Ack(ctxFor(t)))
}

func requireNothing(t *testing.T, c scheduler.Consumer, why string) {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if ok {
			t.Fatalf("%s: unexpected delivery of %s", why, d.Message().TaskID)
		}
	case <-time.After(quiet):
	}
}

func testRoundTrip(t *testing.T, b scheduler.Broker) {
	m := msg(t, "work", 3)
	m.Attempt = 7
	publish(t, b, m)
	c := consume(t, b, "work", 1)
	d := receive(t, c)
	got := d.Message()
	require.Equal(t, m.TaskID, got.TaskID)
	require.Equal(t, m.Attempt, got.Attempt)
	require.Equal(t, m.Queue, got.Queue)
	require.Equal(t, m.Priority, got.Priority)
	require.False(t, d.Redelivered())
	ack(t, d)
}

func testPriorityOrder(t *testing.T, b scheduler.Broker) {
	prios := []scheduler.Priority{1, 5, 9, 5, 0, 9, 3, 7}
	var msgs []scheduler.Message
	for _, p := range prios {
		msgs = append(msgs, msg(t, "work", p))
	}
	publish(t, b, msgs...)
	c := consume(t, b, "work", 1)
	var got []scheduler.Message
	for range msgs {
		d := receive(t, c)
		got = append(got, d.Message())
		ack(t, d)
	}
	want := []scheduler.Message{msgs[2], msgs[5], msgs[7], msgs[1], msgs[3], msgs[6], msgs[0], msgs[4]}
	for i := range want {
		require.Equal(t, want[i].TaskID, got[i].TaskID, "position %d: highest priority first, FIFO within a priority", i)
	}
}

func testPriorityUnderBacklog(t *testing.T, b scheduler.Broker) {
	const lows, highs, prefetch = 300, 10, 4
	var backlog []scheduler.Message
	for range lows {
		backlog = append(backlog, msg(t, "work", scheduler.PriorityLow))
	}
	publish(t, b, backlog...)
	c := consume(t, b, "work", prefetch)
	for range 20 {
		ack(t, receive(t, c))
	}
	high := make(map[string]bool)
	var urgent []scheduler.Message
	for range highs {
		m := msg(t, "work", scheduler.PriorityHigh)
		high[m.TaskID] = true
		urgent = append(urgent, m)
	}
	publish(t, b, urgent...)
	seen := 0
	for i := 0; seen < highs; i++ {
		require.Less(t, i, prefetch+highs, "every high-priority message arrives before the low ones still waiting (prefetched ones aside)")
		d := receive(t, c)
		if high[d.Message().TaskID] {
			seen++
		}
		ack(t, d)
	}
}

func testDelay(t *testing.T, b scheduler.Broker) {
	long, short := msg(t, "work", 5), msg(t, "work", 5)
	long.Delay, short.Delay = 4*time.Second, 1200*time.Millisecond
	now := msg(t, "work", 5)
	c := consume(t, b, "work", 3)
	start := time.Now()
	publish(t, b, long)
	publish(t, b, short, now)

	d := receive(t, c)
	require.Equal(t, now.TaskID, d.Message().TaskID, "an undelayed message is not held behind delayed ones")
	ack(t, d)
	d = receive(t, c)
	require.Equal(t, short.TaskID, d.Message().TaskID, "a short delay is not held behind a long one")
	require.GreaterOrEqual(t, time.Since(start), short.Delay, "never earlier than the delay")
	ack(t, d)
	d = receive(t, c)
	require.Equal(t, long.TaskID, d.Message().TaskID)
	require.GreaterOrEqual(t, time.Since(start), long.Delay, "never earlier than the delay")
	require.Equal(t, long.Priority, d.Message().Priority, "the priority survives the delay")
	ack(t, d)
}

func testRequeue(t *testing.T, b scheduler.Broker) {
	m := msg(t, "work", 5)
	publish(t, b, m)
	c := consume(t, b, "work", 1)
	d := receive(t, c)
	require.NoError(t, d.Requeue(ctxFor(t)))
	d = receive(t, c)
	require.Equal(t, m.TaskID, d.Message().TaskID)
	require.True(t, d.Redelivered())
	ack(t, d)
}

func testRedeliverOnClose(t *testing.T, b scheduler.Broker) {
	a, z := msg(t, "work", 5), msg(t, "work", 5)
	publish(t, b, a, z)
	c1 := consume(t, b, "work", 2)
	first := receive(t, c1)
	receive(t, c1)
	ack(t, first)
	require.NoError(t, c1.Close())
	_, open := <-c1.Deliveries()
	require.False(t, open, "a closed consumer's channel is closed")

	c2 := consume(t, b, "work", 2)
	d := receive(t, c2)
	require.Equal(t, z.TaskID, d.Message().TaskID, "the unsettled message comes back")
	require.True(t, d.Redelivered())
	ack(t, d)
	requireNothing(t, c2, "an acknowledged message never comes back")
}

// testDeliveryID checks that every publish, even of the same Message,
// makes a copy with an ID of its own, which it keeps when requeued or
// redelivered after its consumer closed.
func testDeliveryID(t *testing.T, b scheduler.Broker) {
	m := msg(t, "work", 5)
	publish(t, b, m)
	publish(t, b, m)
	c1 := consume(t, b, "work", 2)
	d1, d2 := receive(t, c1), receive(t, c1)
	require.NotEmpty(t, d1.ID())
	require.NotEqual(t, d1.ID(), d2.ID(), "two publishes of one Message are two copies")
	id1, id2 := d1.ID(), d2.ID()

	require.NoError(t, d1.Requeue(ctxFor(t)))
	again := receive(t, c1)
	require.True(t, again.Redelivered())
	require.Equal(t, id1, again.ID(), "a requeued copy keeps its ID")
	require.NoError(t, c1.Close())

	c2 := consume(t, b, "work", 2)
	seen := map[string]bool{}
	for range 2 {
		d := receive(t, c2)
		require.True(t, d.Redelivered())
		seen[d.ID()] = true
		ack(t, d)
	}
	require.Equal(t, map[string]bool{id1: true, id2: true}, seen, "copies redelivered after their consumer closed keep their IDs")
}

func testPrefetch(t *testing.T, b scheduler.Broker) {
	var msgs []scheduler.Message
	for range 3 {
		msgs = append(msgs, msg(t, "work", 5))
	}
	publish(t, b, msgs...)
	c := consume(t, b, "work", 2)
	d1 := receive(t, c)
	receive(t, c)
	requireNothing(t, c, "prefetch 2 allows 2 unsettled deliveries")
	ack(t, d1)
	receive(t, c)
}

func testDeadLetter(t *testing.T, b scheduler.Broker) {
	bad, marker := msg(t, "work", 5), msg(t, "work", 5)
	publish(t, b, bad)
	c := consume(t, b, "work", 1)
	d := receive(t, c)
	require.NoError(t, d.DeadLetter(ctxFor(t), "cannot run"))
	publish(t, b, marker)
	d = receive(t, c)
	require.Equal(t, marker.TaskID, d.Message().TaskID, "a dead-lettered message is not redelivered")
	ack(t, d)
}

func testSettleOnce(t *testing.T, b scheduler.Broker) {
	publish(t, b, msg(t, "work", 5))
	c := consume(t, b, "work", 1)
	d := receive(t, c)
	ctx := ctxFor(t)
	require.NoError(t, d.Ack(ctx))
	require.Error(t, d.Ack(ctx), "second ack")
	require.Error(t, d.Requeue(ctx), "requeue after ack")
	require.Error(t, d.DeadLetter(ctx, "x"), "dead-letter after ack")
}

func testDepth(t *testing.T, b scheduler.Broker) {
	ctx := ctxFor(t)
	n, err := b.Depth(ctx, "empty")
	require.NoError(t, err)
	require.Zero(t, n)
	delayed := msg(t, "work", 5)
	delayed.Delay = time.Hour
	publish(t, b, msg(t, "work", 5), msg(t, "work", 5), msg(t, "work", 5), delayed)
	depth := func(want int) {
		t.Helper()
		require.Eventually(t, func() bool {
			n, err := b.Depth(ctx, "work")
			return err == nil && n == want
		}, wait, 20*time.Millisecond, "depth %d", want)
	}
	depth(3)
	c := consume(t, b, "work", 1)
	d := receive(t, c)
	depth(2)
	ack(t, d)
}

func testQueuesAreSeparate(t *testing.T, b scheduler.Broker) {
	ma, mb := msg(t, "alpha", 5), msg(t, "beta", 5)
	publish(t, b, ma, mb)
	ca := consume(t, b, "alpha", 5)
	cb := consume(t, b, "beta", 5)
	d := receive(t, ca)
	require.Equal(t, ma.TaskID, d.Message().TaskID)
	ack(t, d)
	d = receive(t, cb)
	require.Equal(t, mb.TaskID, d.Message().TaskID)
	ack(t, d)
	requireNothing(t, ca, "alpha had one message")
}

func testCompetingConsumers(t *testing.T, b scheduler.Broker) {
	const publishers, each = 4, 50
	cons := []scheduler.Consumer{consume(t, b, "work", 8), consume(t, b, "work", 8)}
	var (
		mu   sync.Mutex
		got  = make(map[string]int)
		by   = make([]int, len(cons))
		done = make(chan struct{})
	)
	for i, c := range cons {
		go func() {
			for d := range c.Deliveries() {
				mu.Lock()
				got[d.Message().TaskID]++
				by[i]++
				n := len(got)
				mu.Unlock()
				assert.NoError(t, d.Ack(context.Background()))
				if n == publishers*each {
					close(done)
				}
			}
		}()
	}
	var sent sync.Map
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				m := msg(t, "work", scheduler.Priority((p+i)%10))
				sent.Store(m.TaskID, true)
				assert.NoError(t, b.Publish(context.Background(), m))
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(wait):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d of %d messages", len(got), publishers*each)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		_, ok := sent.Load(id)
		require.True(t, ok, "unknown message %s", id)
		require.Equal(t, 1, n, "message %s delivered %d times", id, n)
	}
	require.Positive(t, by[0], "both consumers get work")
	require.Positive(t, by[1], "both consumers get work")
}

func testClose(t *testing.T, b scheduler.Broker) {
	c := consume(t, b, "work", 1)
	require.NoError(t, b.Close())
	select {
	case _, ok := <-c.Deliveries():
		require.False(t, ok, "deliveries closed with the broker")
	case <-time.After(wait):
		t.Fatal("deliveries not closed after broker Close")
	}
	require.ErrorIs(t, b.Publish(ctxFor(t), msg(t, "work", 5)), scheduler.ErrClosed)
	_, err := b.Consume(ctxFor(t), "work", 1)
	require.ErrorIs(t, err, scheduler.ErrClosed)
}

func testPing(t *testing.T, b scheduler.Broker) {
	require.NoError(t, b.Ping(ctxFor(t)))
}
