package rabbitmq

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// ackLog records the acks an acker sends.
type ackLog struct {
	mu   sync.Mutex
	sent []string
}

func (l *ackLog) Ack(tag uint64, multiple bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, fmt.Sprintf("%d/%v", tag, multiple))
	return nil
}

func (l *ackLog) Nack(tag uint64, multiple, requeue bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, fmt.Sprintf("%d/nack/%v/%v", tag, multiple, requeue))
	return nil
}

func (l *ackLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sent...)
}

func TestAckerCoalesces(t *testing.T) {
	t.Parallel()
	l := &ackLog{}
	a := newAcker(l, zap.NewNop())

	// In order: each ack completes the run and goes out at once.
	require.NoError(t, a.ack(1))
	require.Equal(t, []string{"1/true"}, l.get())

	// 3 and 4 wait for 2; 2 takes them along in one frame.
	require.NoError(t, a.ack(3))
	require.NoError(t, a.ack(4))
	require.Equal(t, []string{"1/true"}, l.get())
	require.NoError(t, a.ack(2))
	require.Equal(t, []string{"1/true", "4/true"}, l.get())

	// A requeued delivery (5) is written by its caller first; a multiple
	// ack past it comes only after.
	require.NoError(t, a.ack(6))
	a.done(5)
	require.Equal(t, []string{"1/true", "4/true", "6/true"}, l.get())

	// 8 waits behind 7, which stays unsettled: 8 goes out alone after the
	// delay, and a later multiple ack does not send it again.
	require.NoError(t, a.ack(8))
	require.Eventually(t, func() bool { return len(l.get()) == 4 }, 5*time.Second, time.Millisecond)
	require.Equal(t, "8/false", l.get()[3])
	require.NoError(t, a.ack(7))
	require.Equal(t, "7/true", l.get()[4])

	// Closing sends what waits, and later acks go out at once.
	require.NoError(t, a.ack(10))
	a.close()
	require.Equal(t, "10/false", l.get()[5])
	require.NoError(t, a.ack(9))
	require.Equal(t, []string{"1/true", "4/true", "6/true", "8/false", "7/true", "10/false", "9/false"}, l.get())
}

// TestAckerRequeuesLater: a delivery handed back with requeueAfter is
// nacked (with requeue) after the delay and only then recorded, so a
// multiple ack never covers it; closing the acker cancels a requeue not yet
// made.
func TestAckerRequeuesLater(t *testing.T) {
	t.Parallel()
	l := &ackLog{}
	a := newAcker(l, zap.NewNop())

	// 1 is requeued later; once it is, the ack of 2 completes the run.
	a.requeueAfter(1, time.Millisecond)
	require.Eventually(t, func() bool { return len(l.get()) == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []string{"1/nack/false/true"}, l.get())
	require.NoError(t, a.ack(2))
	require.Equal(t, []string{"1/nack/false/true", "2/true"}, l.get())

	// 4 is acked while 3 waits for its requeue: 4 goes out alone (after
	// ackDelay) or with multiple after 3's nack, never before it.
	a.requeueAfter(3, 20*time.Millisecond)
	require.NoError(t, a.ack(4))
	require.Eventually(t, func() bool { return len(l.get()) == 4 }, 5*time.Second, time.Millisecond)
	got := l.get()[2:]
	if got[0] != "4/false" {
		require.Equal(t, []string{"3/nack/false/true", "4/true"}, got)
	} else {
		require.Equal(t, "3/nack/false/true", got[1])
	}

	// A requeue still waiting when the acker closes is not made (closing
	// the channel returns the message), nor one asked for afterwards.
	a.requeueAfter(5, time.Hour)
	a.close()
	a.requeueAfter(6, time.Nanosecond)
	a.mu.Lock()
	require.Empty(t, a.requeues)
	a.mu.Unlock()
	require.Len(t, l.get(), 4)
}
