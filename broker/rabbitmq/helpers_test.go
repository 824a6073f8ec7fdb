package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const envURL = "SCHEDULER_TEST_AMQP_URL"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// amqpURL returns the test server's URL or skips t.
func amqpURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		t.Skipf("%s is not set: skipping the RabbitMQ test (e.g. %s=amqp://guest:guest@127.0.0.1:5672/)", envURL, envURL)
	}
	return u
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

// proxy is a loopback TCP proxy to the RabbitMQ server whose connections a
// test can cut, as a network failure would.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	holes map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, url string) (*proxy, string) {
	t.Helper()
	u, err := amqp.ParseURI(url)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{t: t, ln: ln, target: net.JoinHostPort(u.Host, itoa(u.Port))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	port := ln.Addr().(*net.TCPAddr).Port
	u.Host, u.Port = "127.0.0.1", port
	return p, u.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isBlackholed(src) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) isBlackholed(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holes[c]
}

// blackhole silently drops everything on the current connections from now
// on, without closing them: a network cut that only heartbeats notice.
func (p *proxy) blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holes == nil {
		p.holes = map[net.Conn]bool{}
	}
	for _, c := range p.conns {
		p.holes[c] = true
	}
	return len(p.conns) / 2
}

// cut closes every proxied connection; new ones are accepted.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	return n
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// ctxT returns a context ending with the test or after d.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
