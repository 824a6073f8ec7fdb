package membroker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/broker/brokertest"
	membroker "github.com/dtsched/scheduler/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) scheduler.Broker {
		b := membroker.New()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestDeadLettersAreKept(t *testing.T) {
	b := membroker.New()
	defer b.Close()
	ctx := t.Context()
	m := scheduler.Message{TaskID: "t1", Queue: "q", Priority: 4, Attempt: 2}
	if err := b.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consume(ctx, "q", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := <-c.Deliveries()
	if err := d.DeadLetter(ctx, "undecodable"); err != nil {
		t.Fatal(err)
	}
	got := b.DeadLetters()
	if len(got) != 1 || got[0].Message != m || got[0].Reason != "undecodable" {
		t.Fatalf("dead letters = %+v, want the message with its reason", got)
	}
}

// A requeued message goes back to its place before the consumer can take
// the next one: a lower priority never overtakes it.
func TestRequeueKeepsPriority(t *testing.T) {
	ctx := t.Context()
	for i := range 2000 {
		b := membroker.New()
		high := scheduler.Message{TaskID: fmt.Sprintf("high-%d", i), Queue: "q", Priority: 9}
		low := scheduler.Message{TaskID: fmt.Sprintf("low-%d", i), Queue: "q", Priority: 1}
		require.NoError(t, b.Publish(ctx, high, low))
		c, err := b.Consume(ctx, "q", 1)
		require.NoError(t, err)
		d := <-c.Deliveries()
		require.Equal(t, high.TaskID, d.Message().TaskID)
		require.NoError(t, d.Requeue(ctx))
		select {
		case next := <-c.Deliveries():
			require.Equal(t, high.TaskID, next.Message().TaskID, "round %d: the requeued priority-9 message was overtaken", i)
		case <-time.After(10 * time.Second):
			t.Fatal("nothing delivered after the requeue")
		}
		require.NoError(t, c.Close())
		require.NoError(t, b.Close())
	}
}

// A delivery the consumer had buffered but not handed out when it closed
// is requeued, and its stale copy is not received from the closed consumer.
func TestClosedConsumerHandsOutNothing(t *testing.T) {
	ctx := t.Context()
	b := membroker.New()
	defer b.Close()
	m1 := scheduler.Message{TaskID: "t1", Queue: "q", Priority: 5}
	m2 := scheduler.Message{TaskID: "t2", Queue: "q", Priority: 5}
	require.NoError(t, b.Publish(ctx, m1, m2))
	c1, err := b.Consume(ctx, "q", 2)
	require.NoError(t, err)
	require.NoError(t, (<-c1.Deliveries()).Ack(ctx))
	require.Eventually(t, func() bool { return len(c1.Deliveries()) == 1 }, 10*time.Second, time.Millisecond, "t2 waits in the consumer's buffer")
	require.NoError(t, c1.Close())
	_, open := <-c1.Deliveries()
	require.False(t, open, "a closed consumer hands out nothing")

	c2, err := b.Consume(ctx, "q", 2)
	require.NoError(t, err)
	defer c2.Close()
	d := <-c2.Deliveries()
	require.Equal(t, "t2", d.Message().TaskID)
	require.True(t, d.Redelivered())
}
