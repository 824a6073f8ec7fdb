package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// Broker is a scheduler.Broker on RabbitMQ. Create it with New; it is safe
// for concurrent use.
type Broker struct {
	opts  options
	names names
	urls  []string
	log   *zap.Logger

	idPrefix string        // makes message IDs unique across brokers
	seq      atomic.Uint64 // message ID counter
	rr       atomic.Uint64 // round robin over publishing channels

	mu          sync.Mutex
	sess        *session      // nil while reconnecting
	sessChanged chan struct{} // closed and replaced when sess changes
	known       map[string]struct{}
	cascade     bool // the delay cascade is in use
	consumers   map[*consumer]struct{}
	closed      bool
	closing     chan struct{}
	urlIdx      int // next URL to dial; used by dial only

	baseCtx    context.Context // canceled by Close
	cancelBase context.CancelFunc

	reconnects atomic.Uint64
	wg         sync.WaitGroup
}

var _ scheduler.TransientBroker = (*Broker)(nil)

// Transient reports whether the broker publishes transient messages
// (WithTransientMessages), which a RabbitMQ restart loses.
func (b *Broker) Transient() bool { return b.opts.transient }

// New connects to RabbitMQ and returns a Broker. urls are AMQP URIs of the
// nodes of one cluster (amqp://user:pass@host:5672/vhost): New tries them in
// order until one accepts, and after a lost connection the broker tries
// them in turn starting with the next one. ctx bounds the first connection
// only. Queues and the delay cascade are declared on first use.
func New(ctx context.Context, urls []string, opts ...Option) (*Broker, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, optionErr("Option", "must not be nil")
		}
		if err := opt.apply(&o); err != nil {
			return nil, err
		}
	}
	if len(urls) == 0 {
		return nil, optionErr("urls", "at least one AMQP URL is needed")
	}
	for _, u := range urls {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, optionErr("urls", "%v", err) // the error never contains the password
		}
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("rabbitmq: random id: %w", err)
	}
	b := &Broker{
		opts:        o,
		names:       names{prefix: o.prefix},
		urls:        append([]string(nil), urls...),
		log:         o.logger.With(zap.String("component", "rabbitmq")),
		idPrefix:    hex.EncodeToString(rnd[:]) + "-",
		sessChanged: make(chan struct{}),
		known:       map[string]struct{}{},
		consumers:   map[*consumer]struct{}{},
		closing:     make(chan struct{}),
	}
	b.baseCtx, b.cancelBase = context.WithCancel(context.Background())
	s, err := b.dial(ctx)
	if err != nil {
		b.cancelBase()
		return nil, err
	}
	b.sess = s
	b.wg.Add(1)
	go b.supervise(s)
	return b, nil
}

// Reconnects returns how many times since New the broker re-established its
// lost connection, or subscribed a consumer again after the server closed
// or canceled its channel on a live connection (consumer_timeout, a deleted
// queue). Consumers resuming after a lost connection are part of that one
// reconnection.
func (b *Broker) Reconnects() uint64 { return b.reconnects.Load() }

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close closes every consumer (their unsettled deliveries return to their
// queues), then the connection, and waits for the broker's goroutines.
// Publish calls still waiting fail with scheduler.ErrClosed. Further calls,
// Close included, fail with scheduler.ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return scheduler.ErrClosed
	}
	b.closed = true
	close(b.closing)
	b.cancelBase()
	cs := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	s := b.sess
	b.mu.Unlock()

	for _, c := range cs {
		_ = c.Close()
	}
	if s != nil {
		s.close()
	}
	b.wg.Wait()
	return nil
}

// Ping checks that the connection is up by opening and closing a channel.
func (b *Broker) Ping(ctx context.Context) error {
	s, err := b.waitSession(ctx, nil)
	if err != nil {
		return err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return b.mapErr("ping", err)
	}
	return b.mapErr("ping", ch.Close())
}

// Depth returns the number of ready messages of queue's work queue (not
// delayed messages, not unacknowledged ones), without consuming. A queue
// never declared has depth 0.
func (b *Broker) Depth(ctx context.Context, queue string) (int, error) {
	if err := validateMessage(scheduler.Message{TaskID: "depth", Queue: queue}); err != nil {
		return 0, err
	}
	s, err := b.waitSession(ctx, nil)
	if err != nil {
		return 0, err
	}
	// A passive declare of a missing queue closes its channel: use a
	// throwaway one.
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, b.mapErr("depth", err)
	}
	q, err := ch.QueueDeclarePassive(b.names.work(queue), true, false, false, false, nil)
	if err != nil {
		if isNotFound(err) {
			return 0, nil
		}
		_ = ch.Close()
		return 0, b.mapErr("depth", err)
	}
	_ = ch.Close()
	return q.Messages, nil
}

// waitSession returns the current session, waiting while the broker
// reconnects, until ctx ends, stop is closed or the broker is closed.
func (b *Broker) waitSession(ctx context.Context, stop <-chan struct{}) (*session, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, fmt.Errorf("rabbitmq: %w", scheduler.ErrClosed)
		}
		s, changed := b.sess, b.sessChanged
		b.mu.Unlock()
		if s != nil && s.alive() {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("rabbitmq: waiting for the connection: %w", ctx.Err())
		case <-stop:
			return nil, errStopped
		case <-changed:
		case <-b.closing:
		}
	}
}

var errStopped = errors.New("rabbitmq: stopped")

func (b *Broker) setSession(s *session) {
	b.mu.Lock()
	b.sess = s
	close(b.sessChanged)
	b.sessChanged = make(chan struct{})
	b.mu.Unlock()
}

// supervise watches the connection and replaces it when it is lost, until
// the broker is closed.
func (b *Broker) supervise(s *session) {
	defer b.wg.Done()
	for {
		select {
		case <-s.done:
		case <-b.closing:
			s.close() // Close may have missed a session set meanwhile
			<-s.done
			return
		}
		b.setSession(nil)
		b.log.Warn("connection lost; reconnecting", zap.String("url", redact(s.url)), zap.Error(s.closeErr()))
		var err error
		for attempt := 0; ; attempt++ {
			if !b.sleep(b.backoff(attempt), nil) {
				return
			}
			ctx, cancel := context.WithTimeout(b.baseCtx, 30*time.Second)
			s, err = b.dial(ctx)
			cancel()
			if err == nil {
				break
			}
			b.log.Warn("reconnect failed", zap.Int("attempt", attempt+1), zap.Error(err))
		}
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			s.close()
			<-s.done
			return
		}
		n := b.reconnects.Add(1)
		b.log.Info("reconnected", zap.String("url", redact(s.url)), zap.Uint64("reconnects", n))
		b.setSession(s)
	}
}

// backoff returns the wait before attempt n (0-based) to reconnect or to
// subscribe a consumer again: exponential from the minimum up to the
// maximum, jittered down by up to half.
func (b *Broker) backoff(n int) time.Duration {
	d := b.opts.backoffMin
	for i := 0; i < n && d < b.opts.backoffMax; i++ {
		d *= 2
	}
	d = min(d, b.opts.backoffMax)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// sleep waits d and returns true, or false as soon as stop (nil: never)
// is closed or the broker is closed.
func (b *Broker) sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	case <-b.closing:
		return false
	}
}

func redact(u string) string {
	p, err := amqp.ParseURI(u)
	if err != nil {
		return "?"
	}
	p.Password = ""
	return p.String()
}

// dial connects to the first URL that accepts, starting after the one used
// last, and restores the topology declared so far.
func (b *Broker) dial(ctx context.Context) (*session, error) {
	var errs []error
	for i := range b.urls {
		idx := (b.urlIdx + i) % len(b.urls)
		u := b.urls[idx]
		conn, err := b.dialConn(ctx, u, b.opts.connName)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
			continue
		}
		cconn, err := b.dialConn(ctx, u, b.opts.connName+consumeSuffix)
		if err != nil {
			_ = conn.Close()
			errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
			continue
		}
		b.urlIdx = (idx + 1) % len(b.urls)
		s := b.newSession(conn, cconn, u)
		if err := s.restore(); err != nil {
			s.close()
			<-s.done
			errs = append(errs, fmt.Errorf("%s: restoring topology: %w", redact(u), err))
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("rabbitmq: connect: %w", errors.Join(errs...))
}

// consumeSuffix ends the connection_name of a session's consuming
// connection.
const consumeSuffix = " (consume)"

// dialConn opens one AMQP connection to u named name.
func (b *Broker) dialConn(ctx context.Context, u, name string) (*amqp.Connection, error) {
	return amqp.DialConfig(u, amqp.Config{
		Heartbeat: b.opts.heartbeat,
		Locale:    "en_US",
		Properties: amqp.Table{
			"connection_name": name,
			"product":         "github.com/dtsched/scheduler",
		},
		Dial: ctxDialer(ctx),
	})
}

// ctxDialer dials TCP within ctx and bounds the AMQP handshake by ctx's
// deadline (30 s at most); amqp091-go clears the deadline once connected.
func ctxDialer(ctx context.Context) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(30 * time.Second)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		if err := conn.SetDeadline(deadline); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// session is the broker's two connections to one node and what hangs off
// them: conn publishes and declares, cconn consumes and acknowledges. A
// node under a resource alarm stops reading from connections that publish;
// acknowledgements on such a connection would wait too, so consumers could
// not drain the queues that caused the alarm. The two live and die
// together: losing either closes the other.
type session struct {
	b     *Broker
	conn  *amqp.Connection
	cconn *amqp.Connection
	url   string
	done  chan struct{} // closed when the connections are closed
	err   atomic.Pointer[amqp.Error]

	mu   sync.Mutex
	pubs []*pubChannel

	declared sync.Map // scheduler queue name -> struct{}
	cascade  atomic.Bool

	adminMu sync.Mutex // serializes declarations on admin
	admin   *amqp.Channel
}

func (b *Broker) newSession(conn, cconn *amqp.Connection, url string) *session {
	s := &session{b: b, conn: conn, cconn: cconn, url: url, done: make(chan struct{}),
		pubs: make([]*pubChannel, b.opts.publishChannels)}
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	ccloses := cconn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for bl := range blocks {
			if bl.Active {
				b.log.Warn("RabbitMQ blocks publishing (resource alarm)", zap.String("reason", bl.Reason))
			} else {
				b.log.Info("RabbitMQ unblocked publishing")
			}
		}
	}()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		var e *amqp.Error
		select {
		case e = <-closes:
		case e = <-ccloses:
		}
		if e != nil {
			s.err.Store(e)
		}
		s.close()
		close(s.done)
	}()
	return s
}

// closeWait bounds closing a connection: one the node blocks (a resource
// alarm) never reads the close, and losing the consuming connection must
// not hold up the reconnection until the alarm clears.
const closeWait = 5 * time.Second

// close closes both connections.
func (s *session) close() {
	deadline := time.Now().Add(closeWait)
	_ = s.conn.CloseDeadline(deadline)
	_ = s.cconn.CloseDeadline(deadline)
}

func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return !s.conn.IsClosed() && !s.cconn.IsClosed()
	}
}

func (s *session) closeErr() error {
	if e := s.err.Load(); e != nil {
		return e
	}
	return errors.New("connection closed")
}

// restore declares everything declared on earlier connections.
func (s *session) restore() error {
	b := s.b
	b.mu.Lock()
	queues := make([]string, 0, len(b.known))
	for q := range b.known {
		queues = append(queues, q)
	}
	cascade := b.cascade
	b.mu.Unlock()
	if cascade {
		if err := s.ensureCascade(); err != nil {
			return err
		}
	}
	for _, q := range queues {
		if err := s.ensure(q); err != nil {
			return err
		}
	}
	return nil
}

// declare runs fn on the session's admin channel, opening it as needed.
func (s *session) declare(fn func(ch *amqp.Channel) error) error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.admin == nil || s.admin.IsClosed() {
		ch, err := s.conn.Channel()
		if err != nil {
			return err
		}
		s.admin = ch
	}
	return fn(s.admin)
}

// ensure declares queue's topology once per connection.
func (s *session) ensure(queue string) error {
	if _, ok := s.declared.Load(queue); ok {
		return nil
	}
	err := s.declare(func(ch *amqp.Channel) error {
		if _, ok := s.declared.Load(queue); ok {
			return nil
		}
		if err := s.b.declareQueue(ch, queue); err != nil {
			return err
		}
		s.b.mu.Lock()
		s.b.known[queue] = struct{}{}
		s.b.mu.Unlock()
		s.declared.Store(queue, struct{}{})
		return nil
	})
	return err
}

// ensureCascade declares the delay cascade once per connection.
func (s *session) ensureCascade() error {
	if s.cascade.Load() {
		return nil
	}
	return s.declare(func(ch *amqp.Channel) error {
		if s.cascade.Load() {
			return nil
		}
		if err := s.b.declareCascade(ch); err != nil {
			return err
		}
		s.b.mu.Lock()
		s.b.cascade = true
		s.b.mu.Unlock()
		s.cascade.Store(true)
		return nil
	})
}

// forget makes the next use of queue declare it again.
func (s *session) forget(queue string) { s.declared.Delete(queue) }
