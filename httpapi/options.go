package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures the handler New returns.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// DefaultMaxBodyBytes is the default limit of a request body: 1 MiB.
const DefaultMaxBodyBytes = 1 << 20

// DefaultBackendTimeout is how long a request may wait for the backends by
// default.
const DefaultBackendTimeout = 10 * time.Second

type config struct {
	maxBody     int64
	gatherer    prometheus.Gatherer
	token       string
	middlewares []func(http.Handler) http.Handler
	logger      *zap.Logger
	timeout     time.Duration
}

func defaultConfig() config {
	return config{maxBody: DefaultMaxBodyBytes, logger: zap.NewNop(), timeout: DefaultBackendTimeout}
}

// WithMaxBodyBytes sets the largest request body accepted, in bytes; a
// larger one is refused with 413 before it is read in full. Defaults to
// DefaultMaxBodyBytes (1 MiB). The Scheduler's own payload limit
// (scheduler.WithMaxPayload) still applies to the payload inside.
func WithMaxBodyBytes(n int64) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("httpapi: max body bytes %d, must be positive", n)
		}
		c.maxBody = n
		return nil
	})
}

// WithGatherer serves the metrics of g, in the Prometheus text format, at
// GET /metrics. Without it /metrics is not routed (404): the handler never
// serves the global default registry unless it is passed here
// (prometheus.DefaultGatherer).
func WithGatherer(g prometheus.Gatherer) Option {
	return optionFunc(func(c *config) error {
		if g == nil {
			return errors.New("httpapi: gatherer is nil")
		}
		c.gatherer = g
		return nil
	})
}

// WithBearerToken requires every request, on every route, to carry the
// header "Authorization: Bearer <token>". A missing or wrong token gets 401
// with a WWW-Authenticate header. The comparison takes the same time
// whatever the token given. Defaults to no authentication.
func WithBearerToken(token string) Option {
	return optionFunc(func(c *config) error {
		if token == "" {
			return errors.New("httpapi: bearer token is empty")
		}
		c.token = token
		return nil
	})
}

// WithMiddleware wraps every route in mw, for authentication,
// authorization, rate limiting or tracing of the embedding application's
// choosing. Middlewares given in several calls run in the order given, the
// first outermost, all of them outside the bearer token check and inside
// the panic recovery.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return optionFunc(func(c *config) error {
		if mw == nil {
			return errors.New("httpapi: middleware is nil")
		}
		c.middlewares = append(c.middlewares, mw)
		return nil
	})
}

// WithLogger sets the logger: each request at debug level, backend
// failures at error level, recovered panics at error level with their
// stack. Defaults to a no-op logger.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return errors.New("httpapi: logger is nil")
		}
		c.logger = l
		return nil
	})
}

// WithBackendTimeout bounds how long one request waits for the backends;
// a backend that does not answer in time gets the request a 503. Defaults
// to DefaultBackendTimeout (10 seconds).
func WithBackendTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("httpapi: backend timeout %s, must be positive", d)
		}
		c.timeout = d
		return nil
	})
}
