package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler/internal/tcpproxy"
	"github.com/dtsched/scheduler/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// amqpURL returns the test server's URL or skips t.
func amqpURL(t testing.TB) string {
	t.Helper()
	return testenv.AMQP(t)
}

// uniquePrefix returns a prefix no other test uses.
func uniquePrefix(t testing.TB) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return c
		}
		return '-'
	}, t.Name())
	if len(name) > 60 {
		name = name[:60]
	}
	return "sched-test-" + name + "-" + hex.EncodeToString(r[:])
}

// newTestBroker connects a broker with a unique prefix (also its connection
// name) to url, closes it and deletes its topology when t ends.
func newTestBroker(t testing.TB, url string, opts ...Option) *Broker {
	t.Helper()
	return newTestBrokerURLs(t, []string{url}, opts...)
}

// newTestBrokerURLs is newTestBroker with several URLs.
func newTestBrokerURLs(t testing.TB, urls []string, opts ...Option) *Broker {
	t.Helper()
	prefix := uniquePrefix(t)
	opts = append([]Option{WithPrefix(prefix), WithConnectionName(prefix),
		WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond)}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, urls, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.Close()
		deleteTopology(t, b)
	})
	return b
}

// deleteTopology deletes every exchange and queue b declared.
func deleteTopology(t testing.TB, b *Broker) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL(t))
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	b.mu.Lock()
	var queues, exchanges []string
	for q := range b.known {
		queues = append(queues, b.names.work(q), b.names.dead(q))
	}
	exchanges = append(exchanges, b.names.deliver())
	if b.cascade {
		for k := 0; k < delayLevels; k++ {
			queues = append(queues, b.names.wait(k))
			exchanges = append(exchanges, b.names.delay(k))
		}
	}
	b.mu.Unlock()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("cleanup: delete queue %s: %v", q, err)
			return
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Errorf("cleanup: delete exchange %s: %v", x, err)
			return
		}
	}
}

// rawConn connects to the test server bypassing any broker and opens a
// channel; the caller closes the connection.
func rawConn(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL(t))
	require.NoError(t, err)
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
	}
	require.NoError(t, err)
	return conn, ch
}

// deleteWorkQueue deletes queue's work queue behind b's back.
func deleteWorkQueue(t *testing.T, b *Broker, queue string) {
	t.Helper()
	conn, ch := rawConn(t)
	_, err := ch.QueueDelete(b.names.work(queue), false, false, false)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
}

// newProxy starts a loopback TCP proxy to the RabbitMQ server of url,
// whose connections a test can cut or blackhole as a network failure
// would, and returns it with the URL that goes through it.
func newProxy(t testing.TB, url string) (*tcpproxy.Proxy, string) {
	t.Helper()
	u, err := amqp.ParseURI(url)
	require.NoError(t, err)
	p, err := tcpproxy.New(net.JoinHostPort(u.Host, strconv.Itoa(u.Port)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host, u.Port = "127.0.0.1", p.Port()
	return p, u.String()
}

// ctxT returns a context ending with the test or after d.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
