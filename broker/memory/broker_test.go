package membroker_test

import (
	"testing"

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
