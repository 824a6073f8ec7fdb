package rabbitmq

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// TestPriorityUnderBacklog: with 1,000 low-priority messages waiting, 10
// high-priority ones published after them all start before the remaining
// low ones; only what was already prefetched comes first.
func TestPriorityUnderBacklog(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 60*time.Second)
	const lows, highs, prefetch = 1000, 10, 10
	var backlog []scheduler.Message
	for i := range lows {
		backlog = append(backlog, scheduler.Message{TaskID: fmt.Sprintf("low-%d", i), Queue: "work", Priority: scheduler.PriorityLow})
	}
	require.NoError(t, b.Publish(ctx, backlog...))
	c, err := b.Consume(ctx, "work", prefetch)
	require.NoError(t, err)
	for range 50 {
		require.NoError(t, recv(t, c, 10*time.Second).Ack(ctx))
	}
	var urgent []scheduler.Message
	for i := range highs {
		urgent = append(urgent, scheduler.Message{TaskID: fmt.Sprintf("high-%d", i), Queue: "work", Priority: scheduler.PriorityHigh})
	}
	require.NoError(t, b.Publish(ctx, urgent...))
	seen := 0
	for i := 0; seen < highs; i++ {
		require.Less(t, i, prefetch+highs, "high-priority messages start before the remaining low ones (prefetched ones aside)")
		d := recv(t, c, 10*time.Second)
		if d.Message().Priority == scheduler.PriorityHigh {
			seen++
		}
		require.NoError(t, d.Ack(ctx))
	}
	require.NoError(t, c.Close())
}

// TestDelays: a one-second delay is not held behind a 30-day one published
// first, a sub-second delay is rounded up to the precision, nothing arrives
// early, and priority survives the cascade.
func TestDelays(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 60*time.Second)
	c, err := b.Consume(ctx, "work", 10)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "month", Queue: "work", Delay: 30 * 24 * time.Hour}))
	require.NoError(t, b.Publish(ctx,
		scheduler.Message{TaskID: "three", Queue: "work", Priority: 8, Delay: 2500 * time.Millisecond},
		scheduler.Message{TaskID: "sub", Queue: "work", Priority: 1, Delay: 10 * time.Millisecond},
		scheduler.Message{TaskID: "one", Queue: "work", Priority: 9, Delay: time.Second},
	))
	want := []struct {
		id    string
		prio  scheduler.Priority
		least time.Duration
	}{{"sub", 1, time.Second}, {"one", 9, time.Second}, {"three", 8, 3 * time.Second}}
	got := map[string]bool{}
	for range want {
		d := recv(t, c, 15*time.Second)
		el := time.Since(start)
		got[d.Message().TaskID] = true
		for _, w := range want {
			if w.id == d.Message().TaskID {
				require.GreaterOrEqual(t, el, w.least, "%s arrived early", w.id)
				require.Equal(t, w.prio, d.Message().Priority)
			}
		}
		require.NoError(t, d.Ack(ctx))
	}
	require.Equal(t, map[string]bool{"sub": true, "one": true, "three": true}, got)
	require.Zero(t, depth(t, b, "work"), "delayed messages are not ready")
	require.NoError(t, c.Close())
}

// TestDelayBeyondCascade: a message carrying a not-before time in the
// future (as a delay beyond MaxCascadeDelay does after its first pass) is
// not handed out but delayed again for the time left.
func TestDelayBeyondCascade(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	c, err := b.Consume(ctx, "work", 1)
	require.NoError(t, err)
	nb := time.Now().Add(1500 * time.Millisecond)
	o := b.encode(scheduler.Message{TaskID: "far", Queue: "work", Priority: 4}, time.Now())
	o.pub.Headers = amqp.Table{headerNotBefore: nb.UnixMilli()}
	rawPublish(t, b, "work", o.pub)
	d := recv(t, c, 10*time.Second)
	require.False(t, time.Now().Before(nb), "delivered before its not-before time")
	require.Equal(t, "far", d.Message().TaskID)
	require.Equal(t, scheduler.Priority(4), d.Message().Priority)
	require.NoError(t, d.Ack(ctx))
	require.NoError(t, c.Close())
}
