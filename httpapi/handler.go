package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// handler serves the API of one Scheduler.
type handler struct {
	sched *scheduler.Scheduler
	cfg   config
	log   *zap.Logger
}

// New returns an http.Handler serving the HTTP API of sched. It never
// listens by itself: mount it in the application's server, at the root or
// under a prefix with http.StripPrefix:
//
//	mux.Handle("/scheduler/", http.StripPrefix("/scheduler", api))
//
// The routes, relative to where it is mounted:
//
//	POST /submit                submit a task: 202 and the task
//	GET  /status/{id}           the task (also at GET /tasks/{id})
//	GET  /tasks                 list tasks: ?state=&type=&queue=&limit=&cursor=
//	POST /tasks/{id}/cancel     cancel a task
//	POST /tasks/{id}/retry      run a dead or canceled task again
//	GET  /workers               live worker nodes
//	GET  /schedules             periodic schedules with their next and last ticks
//	GET  /healthz               200 when broker and store answer and the Scheduler is open, else 503
//	GET  /metrics               Prometheus metrics (only WithGatherer)
//
// Every answer is JSON (but /metrics), and every error is
// {"error":{"code":"...","message":"..."}} with a 4xx status for a client
// mistake and 503 when a backend does not answer. See the package
// documentation for the details.
func New(sched *scheduler.Scheduler, opts ...Option) (http.Handler, error) {
	if sched == nil {
		return nil, errors.New("httpapi: scheduler is nil")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("httpapi: nil option")
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	h := &handler{sched: sched, cfg: cfg, log: cfg.logger}

	mux := http.NewServeMux()
	// route serves path with f for method only, and answers 405 with an
	// Allow header to any other method.
	route := func(method, path string, f http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, f)
		allow := method
		if method == http.MethodGet {
			allow = "GET, HEAD"
		}
		mux.HandleFunc(path, methodNotAllowed(allow))
	}
	route(http.MethodPost, "/submit", h.submit)
	route(http.MethodGet, "/status/{id}", h.status)
	route(http.MethodGet, "/tasks", h.list)
	route(http.MethodGet, "/tasks/{id}", h.status)
	route(http.MethodPost, "/tasks/{id}/cancel", h.change(sched.Cancel, scheduler.StateCanceled))
	route(http.MethodPost, "/tasks/{id}/retry", h.change(sched.Retry, scheduler.StatePending))
	route(http.MethodGet, "/workers", h.workers)
	route(http.MethodGet, "/schedules", h.schedules)
	route(http.MethodGet, "/healthz", h.healthz)
	if cfg.gatherer != nil {
		prom := promhttp.HandlerFor(cfg.gatherer, promhttp.HandlerOpts{
			ErrorLog:      promLogger{h.log},
			ErrorHandling: promhttp.ContinueOnError,
		})
		route(http.MethodGet, "/metrics", prom.ServeHTTP)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errorDetail{Code: CodeNotFound, Message: "no such route: " + r.Method + " " + r.URL.Path})
	})

	// From the inside out: clean paths only, the token, the application's
	// middlewares, panic recovery, the access log.
	var root http.Handler = cleanPaths(mux)
	if cfg.token != "" {
		root = bearer(cfg.token, root)
	}
	for _, mw := range slices.Backward(cfg.middlewares) {
		root = mw(root)
		if root == nil {
			return nil, errors.New("httpapi: a middleware returned a nil handler")
		}
	}
	return h.accessLog(h.recover(root)), nil
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, errorDetail{Code: CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s not allowed here; allowed: %s", r.Method, allow)})
	}
}

// cleanPaths refuses paths with ".", ".." or empty segments. The mux would
// redirect them to their clean form, which, under http.StripPrefix, points
// outside the mount point.
func cleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath() // what the mux matches
		c := path.Clean("/" + p)
		if strings.HasSuffix(p, "/") && c != "/" {
			c += "/"
		}
		if c != p {
			writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidPath,
				Message: `the path must not have ".", ".." or empty segments`})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer requires "Authorization: Bearer <token>". Both tokens are hashed
// before the constant-time comparison so that neither their contents nor
// their lengths show in its timing.
func bearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scheduler"`)
			writeError(w, http.StatusUnauthorized, errorDetail{Code: CodeUnauthorized, Message: "a bearer token is required"})
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scheduler", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, errorDetail{Code: CodeUnauthorized, Message: "the bearer token is not valid"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// recover turns a panic in a route into a logged 500 JSON answer (if
// nothing was written yet), so that a bug costs one request, not the
// connection.
func (h *handler) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("panic serving request", zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			if sw.status == 0 {
				writeError(sw, http.StatusInternalServerError, errorDetail{Code: CodeInternal, Message: "internal error; it was logged"})
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// accessLog logs each request at debug level.
func (h *handler) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if ce := h.log.Check(zap.DebugLevel, "http request"); ce != nil {
				ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", sw.status),
					zap.Int("bytes", sw.bytes), zap.Duration("duration", time.Since(start)))
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// promLogger passes promhttp's errors to zap.
type promLogger struct{ log *zap.Logger }

func (l promLogger) Println(v ...any) { l.log.Error("serving metrics: " + fmt.Sprint(v...)) }

// backend returns the context for the backend calls of a request.
func (h *handler) backend(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.timeout)
}

// pathID returns the {id} of the route, or answers 400 and returns false
// when it is malformed: nothing is asked of a backend about such an ID.
func (h *handler) pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := scheduler.ValidateID(id); err != nil {
		h.fail(w, r, err)
		return "", false
	}
	return id, true
}

// status answers GET /status/{id} and GET /tasks/{id}.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	id, ok := h.pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.backend(r)
	defer cancel()
	t, err := h.sched.Status(ctx, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// change answers POST /tasks/{id}/cancel and POST /tasks/{id}/retry: it
// applies op, the Scheduler's Cancel or Retry, and answers with the task as
// it is now, or with its id and state, the one op leaves it in, if the task
// cannot be read back.
func (h *handler) change(op func(context.Context, string) error, state scheduler.State) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := h.pathID(w, r)
		if !ok {
			return
		}
		ctx, cancel := h.backend(r)
		defer cancel()
		if err := op(ctx, id); err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeTask(ctx, w, http.StatusOK, id, map[string]string{"id": id, "state": string(state)})
	}
}

// writeTask answers with status and the task id as it is now or, if it
// cannot be read back (the change is made; only reading it failed), with
// fallback.
func (h *handler) writeTask(ctx context.Context, w http.ResponseWriter, status int, id string, fallback map[string]string) {
	t, err := h.sched.Status(ctx, id)
	if err != nil {
		writeJSON(w, status, fallback)
		return
	}
	writeJSON(w, status, t)
}

// listResponse is the answer of GET /tasks.
type listResponse struct {
	Tasks      []*scheduler.Task `json:"tasks"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// list answers GET /tasks.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidQuery, Message: "malformed query string"})
		return
	}
	var f scheduler.ListFilter
	for name, vals := range query {
		if len(vals) != 1 {
			writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidQuery, Field: name, Message: "query parameter " + strconv.Quote(name) + " given more than once"})
			return
		}
		v := vals[0]
		switch name {
		case "state":
			f.State = scheduler.State(v)
		case "type":
			f.Type = v
		case "queue":
			f.Queue = v
		case "cursor":
			f.Cursor = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > scheduler.MaxListLimit {
				writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidField, Field: "limit",
					Message: fmt.Sprintf("limit: must be a whole number from 1 to %d", scheduler.MaxListLimit)})
				return
			}
			f.Limit = n
		default:
			writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidQuery, Field: name,
				Message: "unknown query parameter " + strconv.Quote(name) + "; known: state, type, queue, cursor, limit"})
			return
		}
	}
	ctx, cancel := h.backend(r)
	defer cancel()
	page, err := h.sched.List(ctx, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if page.Tasks == nil {
		page.Tasks = []*scheduler.Task{}
	}
	writeJSON(w, http.StatusOK, listResponse{Tasks: page.Tasks, NextCursor: page.Next})
}

// workers answers GET /workers.
func (h *handler) workers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.backend(r)
	defer cancel()
	ws, err := h.sched.Workers(ctx)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ws == nil {
		ws = []scheduler.WorkerInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"workers": ws})
}

// schedules answers GET /schedules: the periodic schedules registered on
// this Scheduler, with their next and last ticks.
func (h *handler) schedules(w http.ResponseWriter, r *http.Request) {
	ss := h.sched.Schedules()
	if ss == nil {
		ss = []scheduler.ScheduleInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": ss})
}

// healthResponse is the answer of GET /healthz. On 503 it also carries
// the usual "error" member.
type healthResponse struct {
	Error  *errorDetail      `json:"error,omitempty"`
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// healthz answers GET /healthz.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.backend(r)
	defer cancel()
	health := h.sched.Health(ctx)
	if health.Closed {
		writeJSON(w, http.StatusServiceUnavailable, healthResponse{Status: "unavailable", Checks: map[string]string{},
			Error: &errorDetail{Code: CodeUnavailable, Message: "the scheduler is closed"}})
		return
	}
	res := healthResponse{Status: "ok", Checks: map[string]string{"broker": "ok", "store": "ok"}}
	var down []string
	for _, c := range []struct {
		name string
		err  error
	}{{"broker", health.Broker}, {"store", health.Store}} {
		if c.err != nil {
			res.Checks[c.name] = "unavailable"
			down = append(down, c.name)
			h.log.Error("health check failed", zap.String("backend", c.name), zap.Error(c.err))
		}
	}
	if len(down) == 0 {
		writeJSON(w, http.StatusOK, res)
		return
	}
	res.Status = "unavailable"
	res.Error = &errorDetail{Code: CodeUnhealthy, Message: strings.Join(down, " and ") + " unavailable"}
	writeJSON(w, http.StatusServiceUnavailable, res)
}
