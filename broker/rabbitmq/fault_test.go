package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, d, 5*time.Millisecond, what)
}

// TestConnectionCutDuringPublishBurst cuts the connection twice while many
// goroutines publish: every Publish still returns nil (unconfirmed messages
// are sent again after the reconnect), and every confirmed message is
// delivered.
func TestConnectionCutDuringPublishBurst(t *testing.T) {
	t.Parallel()
	px, purl := newProxy(t, amqpURL(t))
	b := newTestBroker(t, purl)
	ctx := ctxT(t, 90*time.Second)
	const publishers, each = 8, 250
	const total = publishers * each

	var (
		confirmed sync.Map
		progress  atomic.Int64
		failures  atomic.Int64
		wg        sync.WaitGroup
	)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				m := scheduler.Message{TaskID: fmt.Sprintf("p%d-%d", p, i), Queue: "burst", Priority: scheduler.Priority(i % 10)}
				if err := b.Publish(ctx, m); err != nil {
					failures.Add(1)
					t.Errorf("publish %s: %v", m.TaskID, err)
				} else {
					confirmed.Store(m.TaskID, true)
				}
				progress.Add(1)
			}
		})
	}
	waitFor(t, 60*time.Second, "first part of the burst", func() bool { return progress.Load() >= total/5 })
	require.Positive(t, px.Cut())
	waitFor(t, 30*time.Second, "reconnect", func() bool { return b.Reconnects() >= 1 })
	if progress.Load() < total*3/5 {
		waitFor(t, 60*time.Second, "more of the burst", func() bool { return progress.Load() >= total*3/5 })
		px.Cut()
	}
	wg.Wait()
	require.Zero(t, failures.Load())
	require.GreaterOrEqual(t, b.Reconnects(), uint64(1))

	c, err := b.Consume(ctx, "burst", 50)
	require.NoError(t, err)
	seen := map[string]bool{}
	for len(seen) < total {
		d := recv(t, c, 30*time.Second)
		id := d.Message().TaskID
		_, ok := confirmed.Load(id)
		require.True(t, ok, "unknown message %s", id)
		seen[id] = true // duplicates (resent after the cut) are allowed
		require.NoError(t, d.Ack(ctx))
	}
	require.NoError(t, c.Close())
	t.Logf("reconnects %d", b.Reconnects())
}

// consumeAll runs a consumer until every id of want has been acked, and
// checks that a message seen again always comes with Redelivered true.
// onAck runs after each successful ack with the number acked so far.
type tracker struct {
	mu        sync.Mutex
	delivered map[string]int
	acked     map[string]bool
	comeback  int // messages delivered again after an ack that returned nil
}

func newTracker() *tracker {
	return &tracker{delivered: map[string]int{}, acked: map[string]bool{}}
}

func (tr *tracker) see(t *testing.T, d scheduler.Delivery) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	id := d.Message().TaskID
	if tr.delivered[id] > 0 {
		require.True(t, d.Redelivered(), "message %s came again without Redelivered: it would look like new work", id)
	}
	if tr.acked[id] {
		tr.comeback++
	}
	tr.delivered[id]++
}

func (tr *tracker) ack(id string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.acked[id] = true
	return len(tr.acked)
}

// TestConnectionCutDuringConsumption cuts the connection while a consumer
// works through a backlog: a delivery from the dead connection fails to
// settle with ErrDeliveryLost, the consumer resumes by itself, every message
// is acked, and whatever comes again is marked redelivered.
func TestConnectionCutDuringConsumption(t *testing.T) {
	t.Parallel()
	px, purl := newProxy(t, amqpURL(t))
	b := newTestBroker(t, purl)
	ctx := ctxT(t, 90*time.Second)
	const total = 500
	var msgs []scheduler.Message
	for i := range total {
		msgs = append(msgs, scheduler.Message{TaskID: fmt.Sprintf("m%d", i), Queue: "work", Priority: scheduler.Priority(i % 10)})
	}
	require.NoError(t, b.Publish(ctx, msgs...))

	c, err := b.Consume(ctx, "work", 20)
	require.NoError(t, err)
	tr := newTracker()
	cut := false
	for {
		d := recv(t, c, 30*time.Second)
		tr.see(t, d)
		if !cut && len(tr.acked) >= total/3 {
			cut = true
			require.Positive(t, px.Cut())
			waitFor(t, 10*time.Second, "the consumer's channel to die", func() bool { return d.(*delivery).ch.IsClosed() })
			err := d.Ack(ctx)
			require.ErrorIs(t, err, ErrDeliveryLost)
			require.NotErrorIs(t, err, scheduler.ErrClosed)
			continue
		}
		if err := d.Ack(ctx); err != nil {
			// Handed out from the old channel just before it died: it comes
			// back.
			require.ErrorIs(t, err, ErrDeliveryLost)
			continue
		}
		if tr.ack(d.Message().TaskID) == total {
			break
		}
	}
	require.True(t, cut)
	require.GreaterOrEqual(t, b.Reconnects(), uint64(1))
	require.Zero(t, depth(t, b, "work"))
	select {
	case d := <-c.Deliveries():
		t.Fatalf("acked message %s delivered again", d.Message().TaskID)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, c.Close())
	t.Logf("reconnects %d, acks lost in the cut and redelivered: %d", b.Reconnects(), tr.comeback)
}

// connections lists, with rabbitmqctl, the server's connections whose
// connection_name starts with prefix: their names by pid.
func connections(t *testing.T, prefix string) map[string]string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "list_connections", "-s", "pid", "client_properties").CombinedOutput()
	require.NoError(t, err, "%s", out)
	re := regexp.MustCompile(`\{"connection_name","([^"]*)"\}`)
	names := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if m := re.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], prefix) {
			names[strings.Fields(line)[0]] = m[1]
		}
	}
	return names
}

// closeConnections closes, with rabbitmqctl, the server's connections whose
// connection_name is name, and returns how many it closed.
func closeConnections(t *testing.T, name string) int {
	t.Helper()
	n := 0
	for pid, got := range connections(t, name) {
		if got != name {
			continue
		}
		out, err := exec.Command("rabbitmqctl", "close_connection", pid, "test: closing the test's own connection").CombinedOutput()
		require.NoError(t, err, "%s", out)
		n++
	}
	return n
}

// TestServerClosesConnection has RabbitMQ itself close the broker's
// connection (CONNECTION_FORCED, as on a node shutdown or
// rabbitmqctl close_connection) between publishing and consuming.
func TestServerClosesConnection(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not found")
	}
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 60*time.Second)
	const total = 200
	var msgs []scheduler.Message
	for i := range total {
		msgs = append(msgs, scheduler.Message{TaskID: fmt.Sprintf("m%d", i), Queue: "work"})
	}
	require.NoError(t, b.Publish(ctx, msgs...))
	c, err := b.Consume(ctx, "work", 10)
	require.NoError(t, err)
	tr := newTracker()
	closed := false
	for {
		d := recv(t, c, 30*time.Second)
		tr.see(t, d)
		if !closed && len(tr.acked) == total/4 {
			closed = true
			require.Positive(t, closeConnections(t, b.opts.connName))
			waitFor(t, 10*time.Second, "the channel to close", func() bool { return d.(*delivery).ch.IsClosed() })
			require.ErrorIs(t, d.Ack(ctx), ErrDeliveryLost)
			// Publishing waits for the new connection.
			require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "after", Queue: "work"}))
			continue
		}
		if err := d.Ack(ctx); err != nil {
			require.ErrorIs(t, err, ErrDeliveryLost)
			continue
		}
		if tr.ack(d.Message().TaskID) == total+1 {
			break
		}
	}
	require.GreaterOrEqual(t, b.Reconnects(), uint64(1))
	require.NoError(t, c.Close())
}

// TestServerClosesConsumerChannel provokes the channel error RabbitMQ
// raises when consumer_timeout fires (406 PRECONDITION_FAILED closes the
// consumer's channel, the connection stays): the consumer subscribes again
// and the unsettled delivery comes back redelivered.
func TestServerClosesConsumerChannel(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "slow", Queue: "work"}))
	sc, err := b.Consume(ctx, "work", 1)
	require.NoError(t, err)
	d := recv(t, sc, 10*time.Second)
	ch := sc.(*consumer).current.Load()
	// Acking an unknown delivery tag is answered like an expired
	// consumer_timeout: channel.close 406 PRECONDITION_FAILED.
	require.NoError(t, ch.Ack(1<<40, false))
	waitFor(t, 10*time.Second, "the channel to close", ch.IsClosed)
	err = d.Ack(ctx)
	require.ErrorIs(t, err, ErrDeliveryLost)
	require.True(t, errors.Is(err, ErrDeliveryLost))
	d = recv(t, sc, 10*time.Second)
	require.Equal(t, "slow", d.Message().TaskID)
	require.True(t, d.Redelivered())
	require.NoError(t, d.Ack(ctx))
	require.Equal(t, uint64(1), b.Reconnects())
	require.NoError(t, sc.Close())
}

// TestQueueDeletedWhileConsuming: RabbitMQ cancels the consumer of a
// deleted queue; the consumer declares the queue again and goes on.
func TestQueueDeletedWhileConsuming(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	c, err := b.Consume(ctx, "work", 1)
	require.NoError(t, err)
	deleteWorkQueue(t, b, "work")
	waitFor(t, 10*time.Second, "the consumer to subscribe again", func() bool { return b.Reconnects() >= 1 })
	// The queue is back: publishing routes again.
	waitFor(t, 10*time.Second, "a publish to succeed", func() bool {
		return b.Publish(ctx, scheduler.Message{TaskID: "again", Queue: "work"}) == nil
	})
	d := recv(t, c, 10*time.Second)
	require.Equal(t, "again", d.Message().TaskID)
	require.NoError(t, d.Ack(ctx))
	require.NoError(t, c.Close())
}

// TestSilentNetworkCut drops all traffic without closing the sockets: the
// heartbeat notices, the broker reconnects, publishing and consuming go on.
func TestSilentNetworkCut(t *testing.T) {
	t.Parallel()
	px, purl := newProxy(t, amqpURL(t))
	b := newTestBroker(t, purl, WithHeartbeat(time.Second))
	ctx := ctxT(t, 60*time.Second)
	c, err := b.Consume(ctx, "work", 2)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "before", Queue: "work"}))
	require.Equal(t, "before", recv(t, c, 10*time.Second).Message().TaskID) // left unsettled
	require.Positive(t, px.Blackhole())
	start := time.Now()
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "after", Queue: "work"}))
	require.GreaterOrEqual(t, b.Reconnects(), uint64(1), "the publish waited for a new connection")
	t.Logf("publish across the cut took %s", time.Since(start).Round(time.Millisecond))
	got := map[string]bool{}
	for len(got) < 2 {
		d := recv(t, c, 20*time.Second)
		if d.Message().TaskID == "before" {
			require.True(t, d.Redelivered())
		}
		if err := d.Ack(ctx); err != nil {
			require.ErrorIs(t, err, ErrDeliveryLost)
			continue
		}
		got[d.Message().TaskID] = true
	}
	require.NoError(t, c.Close())
}

// TestServerUnreachable: while no connection can be made, calls end with
// their ctx, consumers wait, and Close returns at once.
func TestServerUnreachable(t *testing.T) {
	t.Parallel()
	px, purl := newProxy(t, amqpURL(t))
	b, err := New(ctxT(t, 10*time.Second), []string{purl},
		WithPrefix(uniquePrefix(t)), WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { deleteTopology(t, b) })
	c, err := b.Consume(ctxT(t, 10*time.Second), "work", 1)
	require.NoError(t, err)
	_ = px.Close() // refuse new connections and cut the current one

	short := func() context.Context { return ctxT(t, 300*time.Millisecond) }
	waitFor(t, 10*time.Second, "the connection loss to be noticed", func() bool {
		return errors.Is(b.Ping(short()), context.DeadlineExceeded)
	})
	require.ErrorIs(t, b.Publish(short(), scheduler.Message{TaskID: "t", Queue: "work"}), context.DeadlineExceeded)
	_, err = b.Depth(short(), "work")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = b.Consume(short(), "work", 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, b.Reconnects())

	start := time.Now()
	require.NoError(t, b.Close())
	require.Less(t, time.Since(start), 5*time.Second)
	_, ok := <-c.Deliveries()
	require.False(t, ok)
}

// TestSeveralURLs: New and every reconnection try the URLs in turn, so a
// dead node in the list is passed over.
func TestSeveralURLs(t *testing.T) {
	t.Parallel()
	px, purl := newProxy(t, amqpURL(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close()) // nothing listens there any more
	dead := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", deadPort)

	b := newTestBrokerURLs(t, []string{dead, purl})
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "one", Queue: "work"}))
	for range 2 { // the next URL after the proxy is the dead one, then the proxy again
		require.Positive(t, px.Cut())
		require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "two", Queue: "work"}))
	}
	require.GreaterOrEqual(t, b.Reconnects(), uint64(2))
	require.GreaterOrEqual(t, depth(t, b, "work"), 3)
}

// TestConsumingHasItsOwnConnection checks, from the server's side, that
// consumer channels live on a connection apart from the one that publishes:
// a node under a resource alarm stops reading from publishing connections,
// and acknowledgements must still get through so that workers can drain
// the queues.
func TestConsumingHasItsOwnConnection(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	ctx := ctxT(t, 30*time.Second)
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: "conn-split", Queue: "q"}))
	c, err := b.Consume(ctx, "q", 1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, recv(t, c, 10*time.Second).Ack(ctx))

	names := connections(t, b.opts.connName)
	require.Len(t, names, 2, "a publishing and a consuming connection")

	out, err := exec.Command("rabbitmqctl", "list_channels", "-s", "connection", "consumer_count", "confirm").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var consuming, confirming int
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		name, ours := names[f[0]]
		if !ours {
			continue
		}
		if f[1] != "0" {
			consuming++
			require.Equal(t, b.opts.connName+consumeSuffix, name, "a consumer on the publishing connection")
		}
		if f[2] == "true" {
			confirming++
			require.Equal(t, b.opts.connName, name, "a publisher on the consuming connection")
		}
	}
	require.Equal(t, 1, consuming)
	require.Positive(t, confirming)
}
