package rabbitmq

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
)

// recv waits for one delivery.
// depth returns the ready messages of queue, requiring that Depth answers.
func depth(t *testing.T, b *Broker, queue string) int {
	t.Helper()
	n, err := b.Depth(ctxT(t, 10*time.Second), queue)
	require.NoError(t, err)
	return n
}

func recv(t *testing.T, c scheduler.Consumer, d time.Duration) scheduler.Delivery {
	t.Helper()
	select {
	case del, ok := <-c.Deliveries():
		require.True(t, ok, "deliveries closed")
		return del
	case <-time.After(d):
		t.Fatalf("no delivery within %s", d)
		return nil
	}
}

func TestPublishConsumeAck(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Attempt: 2, Queue: "q.a", Priority: 7}))
	require.Eventually(t, func() bool {
		n, err := b.Depth(ctx, "q.a")
		return err == nil && n == 1
	}, 5*time.Second, 10*time.Millisecond)
	c, err := b.Consume(ctx, "q.a", 1)
	require.NoError(t, err)
	d := recv(t, c, 5*time.Second)
	require.Equal(t, scheduler.Message{TaskID: "t1", Attempt: 2, Queue: "q.a", Priority: 7}, d.Message())
	require.False(t, d.Redelivered())
	require.NoError(t, d.Ack(ctx))
	require.ErrorIs(t, d.Ack(ctx), ErrAlreadySettled)
	require.ErrorIs(t, d.Requeue(ctx), ErrAlreadySettled)
	require.NoError(t, c.Close())
	require.Zero(t, depth(t, b, "q.a"))
}

func TestDepthOfUnknownQueue(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	require.Zero(t, depth(t, b, "never-used"))
	require.NoError(t, b.Ping(ctxT(t, 10*time.Second)))
}

func TestRequeueRedelivers(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Queue: "q"}))
	c, err := b.Consume(ctx, "q", 1)
	require.NoError(t, err)
	d := recv(t, c, 5*time.Second)
	require.NoError(t, d.Requeue(ctx))
	d = recv(t, c, 5*time.Second)
	require.True(t, d.Redelivered())
	require.NoError(t, d.Ack(ctx))
	require.NoError(t, c.Close())
}

func TestConsumerCloseRequeuesUnsettled(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Queue: "q"}, scheduler.Message{TaskID: "t2", Queue: "q"}))
	c, err := b.Consume(ctx, "q", 2)
	require.NoError(t, err)
	d := recv(t, c, 5*time.Second)
	require.NoError(t, c.Close())
	_, ok := <-c.Deliveries()
	require.False(t, ok)
	err = d.Ack(ctx)
	require.ErrorIs(t, err, scheduler.ErrClosed)
	require.ErrorIs(t, err, ErrDeliveryLost)

	c2, err := b.Consume(ctx, "q", 2)
	require.NoError(t, err)
	seen := map[string]bool{}
	for range 2 {
		d := recv(t, c2, 5*time.Second)
		require.True(t, d.Redelivered(), d.Message().TaskID)
		seen[d.Message().TaskID] = true
		require.NoError(t, d.Ack(ctx))
	}
	require.Equal(t, map[string]bool{"t1": true, "t2": true}, seen)
	require.NoError(t, c2.Close())
}

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Queue: "q", Priority: 3}))
	c, err := b.Consume(ctx, "q", 1)
	require.NoError(t, err)
	d := recv(t, c, 5*time.Second)
	require.NoError(t, d.DeadLetter(ctx, "handler exploded"))
	require.ErrorIs(t, d.Ack(ctx), ErrAlreadySettled)
	require.NoError(t, c.Close())

	dl := getOne(t, b, b.names.dead("q"))
	require.Equal(t, "handler exploded", dl.Headers[headerReason])
	require.Equal(t, "q", dl.Headers[headerQueue])
	require.EqualValues(t, 3, dl.Priority)
	m, err := decode(&dl, "q")
	require.NoError(t, err)
	require.Equal(t, "t1", m.TaskID)
	require.Zero(t, depth(t, b, "q"))
}

// getOne takes one message from a raw queue, waiting for it.
func getOne(t *testing.T, b *Broker, queue string) amqp.Delivery {
	t.Helper()
	conn, ch := rawConn(t)
	defer conn.Close()
	var got amqp.Delivery
	require.Eventually(t, func() bool {
		d, ok, err := ch.Get(queue, true)
		require.NoError(t, err)
		got = d
		return ok
	}, 10*time.Second, 20*time.Millisecond)
	return got
}

// rawPublish publishes body to queue's work queue bypassing the broker.
func rawPublish(t *testing.T, b *Broker, queue string, p amqp.Publishing) {
	t.Helper()
	conn, ch := rawConn(t)
	defer conn.Close()
	require.NoError(t, ch.Confirm(false))
	dc, err := ch.PublishWithDeferredConfirm("", b.names.work(queue), true, false, p)
	require.NoError(t, err)
	ok, err := dc.WaitContext(ctxT(t, 10*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
}

func TestGarbageGoesToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	c, err := b.Consume(ctx, "q", 4)
	require.NoError(t, err)
	rawPublish(t, b, "q", amqp.Publishing{Body: []byte("not a task"), MessageId: "garbage-1"})
	rawPublish(t, b, "q", amqp.Publishing{ContentType: contentType, Type: messageType,
		Body: []byte(`{"task_id":"x","attempt":1,"queue":"q","extra":1}`), MessageId: "garbage-2"})
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "good", Queue: "q"}))

	d := recv(t, c, 10*time.Second)
	require.Equal(t, "good", d.Message().TaskID)
	require.NoError(t, d.Ack(ctx))
	got := map[string]string{}
	for range 2 {
		dl := getOne(t, b, b.names.dead("q"))
		got[fmt.Sprint(dl.Headers[headerOriginalID])] = fmt.Sprint(dl.Headers[headerReason])
	}
	require.Contains(t, got["garbage-1"], "undecodable")
	require.Contains(t, got["garbage-2"], "unknown field")
	select {
	case d := <-c.Deliveries():
		t.Fatalf("unexpected delivery %+v", d.Message())
	default:
	}
	require.NoError(t, c.Close())
}

// TestDeadLetterFailureRequeues: when the dead-letter copy of a malformed
// message cannot be published (its dead-letter queue was deleted, so the
// copy comes back unroutable), the message goes back to its queue after a
// backoff rather than holding the consumer's only prefetch slot; the next
// try declares the dead-letter queue again, and the consumer goes on.
func TestDeadLetterFailureRequeues(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.ErrorLevel)
	b := newTestBroker(t, amqpURL(t), WithLogger(zap.New(core)))
	ctx := ctxT(t, 30*time.Second)
	c, err := b.Consume(ctx, "q", 1)
	require.NoError(t, err)
	conn, ch := rawConn(t)
	_, err = ch.QueueDelete(b.names.dead("q"), false, false, false)
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	rawPublish(t, b, "q", amqp.Publishing{Body: []byte("not a task"), MessageId: "garbage-1"})
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "good", Queue: "q"}))
	d := recv(t, c, 10*time.Second)
	require.Equal(t, "good", d.Message().TaskID)
	require.NoError(t, d.Ack(ctx))

	failed := logs.FilterMessageSnippet("dead-lettering failed").All()
	require.NotEmpty(t, failed, "the first dead-lettering failed")
	require.Contains(t, failed[0].ContextMap()["error"], ErrUnroutable.Error())
	dl := getOne(t, b, b.names.dead("q"))
	require.Equal(t, "garbage-1", dl.Headers[headerOriginalID])
	require.NoError(t, c.Close())
	require.Zero(t, depth(t, b, "q"))
}

func TestUnroutablePublishFails(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Queue: "q"}))
	deleteWorkQueue(t, b, "q")

	err := b.Publish(ctx, scheduler.Message{TaskID: "t2", Queue: "q"})
	require.ErrorIs(t, err, ErrUnroutable)
	// The broker declares the queue again on the next publish.
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t3", Queue: "q"}))
	require.Equal(t, 1, depth(t, b, "q"))
}

func TestPublishValidates(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 10*time.Second)
	for _, m := range []scheduler.Message{
		{TaskID: "", Queue: "q"},
		{TaskID: "a/b", Queue: "q"},
		{TaskID: "t", Queue: ""},
		{TaskID: "t", Queue: "bad queue"},
		{TaskID: "t", Queue: "q", Priority: 10},
		{TaskID: "t", Queue: "q", Priority: -1},
		{TaskID: "t", Queue: "q", Attempt: -1},
		{TaskID: "t", Queue: "q", Delay: -time.Second},
	} {
		require.ErrorIs(t, b.Publish(ctx, m), scheduler.ErrInvalidTask, "%+v", m)
	}
	_, err := b.Consume(ctx, "q", 0)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)
	_, err = b.Consume(ctx, "bad queue", 1)
	require.ErrorIs(t, err, scheduler.ErrInvalidTask)
}

func TestClosedBroker(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 10*time.Second)
	c, err := b.Consume(ctx, "q", 1)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	_, ok := <-c.Deliveries()
	require.False(t, ok)
	require.ErrorIs(t, b.Publish(ctx, scheduler.Message{TaskID: "t", Queue: "q"}), scheduler.ErrClosed)
	_, err = b.Consume(ctx, "q", 1)
	require.ErrorIs(t, err, scheduler.ErrClosed)
	_, err = b.Depth(ctx, "q")
	require.ErrorIs(t, err, scheduler.ErrClosed)
	require.ErrorIs(t, b.Ping(ctx), scheduler.ErrClosed)
	require.ErrorIs(t, b.Close(), scheduler.ErrClosed)
}

// WithTransientMessages publishes task messages with delivery mode 1 and
// reports the broker transient; by default they are persistent.
func TestTransientMessages(t *testing.T) {
	t.Parallel()
	url := amqpURL(t)
	for _, transient := range []bool{false, true} {
		var opts []Option
		want := uint8(amqp.Persistent)
		if transient {
			opts = append(opts, WithTransientMessages())
			want = amqp.Transient
		}
		b := newTestBroker(t, url, opts...)
		require.Equal(t, transient, b.Transient())
		ctx := ctxT(t, 30*time.Second)
		require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "t1", Queue: "q.t", Priority: 3}))
		conn, ch := rawConn(t)
		msg, ok, err := ch.Get(b.names.work("q.t"), true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, msg.DeliveryMode)
		require.NoError(t, conn.Close())
	}
}
