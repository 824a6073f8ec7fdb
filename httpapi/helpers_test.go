package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every condition a test waits for.
const wait = 10 * time.Second

var errDown = errors.New("dial tcp 127.0.0.1:6379: connection refused")

// spyStore records the task IDs the backend is asked about, and fails
// every call while down is set.
type spyStore struct {
	scheduler.Store
	down atomic.Bool
	mu   sync.Mutex
	ids  []string
}

func (s *spyStore) saw(id string) error {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *spyStore) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

func (s *spyStore) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	if err := s.saw(id); err != nil {
		return nil, err
	}
	return s.Store.Get(ctx, id)
}

func (s *spyStore) Cancel(ctx context.Context, id string, p scheduler.CancelParams) (*scheduler.Task, error) {
	if err := s.saw(id); err != nil {
		return nil, err
	}
	return s.Store.Cancel(ctx, id, p)
}

func (s *spyStore) Retry(ctx context.Context, id string, now time.Time) (*scheduler.Task, error) {
	if err := s.saw(id); err != nil {
		return nil, err
	}
	return s.Store.Retry(ctx, id, now)
}

func (s *spyStore) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Create(ctx, tasks)
}

func (s *spyStore) List(ctx context.Context, f scheduler.ListFilter) (scheduler.Page, error) {
	if s.down.Load() {
		return scheduler.Page{}, errDown
	}
	return s.Store.List(ctx, f)
}

func (s *spyStore) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Workers(ctx)
}

func (s *spyStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		return errDown
	}
	return s.Store.Ping(ctx)
}

type env struct {
	sched  *scheduler.Scheduler
	broker *membroker.Broker
	store  *spyStore
	h      http.Handler
}

func newEnv(t *testing.T, opts ...httpapi.Option) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

func newEnvWith(t *testing.T, schedOpts []scheduler.Option, opts ...httpapi.Option) *env {
	t.Helper()
	b := membroker.New()
	s := &spyStore{Store: memstore.New()}
	schedOpts = append([]scheduler.Option{scheduler.WithRetryPolicy(func(int, error) time.Duration { return time.Millisecond })}, schedOpts...)
	sched, err := scheduler.New(b, s, schedOpts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, sched.Close())
		_ = b.Close()
	})
	h, err := httpapi.New(sched, opts...)
	require.NoError(t, err)
	return &env{sched: sched, broker: b, store: s, h: h}
}

// response is a decoded answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// errorJSON is the "error" member of an error answer.
type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
	TaskID  string `json:"task_id"`
}

// errorBody decodes the "error" member of an answer.
func (r response) errorBody(t *testing.T) errorJSON {
	t.Helper()
	var e struct {
		Error errorJSON `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.body, &e), "not JSON: %s", r.body)
	return e.Error
}

// errorCode returns the "code" of a JSON error answer, failing the test
// if the body is not one.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	e := r.errorBody(t)
	require.NotEmpty(t, e.Code, "no error code in %s", r.body)
	require.NotEmpty(t, e.Message, "no error message in %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	return e.Code
}

// field returns the error's "field".
func (r response) field(t *testing.T) string {
	t.Helper()
	return r.errorBody(t).Field
}

// taskID returns the error's "task_id".
func (r response) taskID(t *testing.T) string {
	t.Helper()
	return r.errorBody(t).TaskID
}

// task decodes a task answer.
func (r response) task(t *testing.T) *scheduler.Task {
	t.Helper()
	var task scheduler.Task
	require.NoError(t, json.Unmarshal(r.body, &task), "not a task: %s", r.body)
	return &task
}

// do sends a request to h and returns the answer.
func do(t *testing.T, h http.Handler, method, target string, body io.Reader, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// post submits a JSON body.
func post(t *testing.T, h http.Handler, body string, header ...string) response {
	t.Helper()
	return do(t, h, http.MethodPost, "/submit", strings.NewReader(body), append([]string{"Content-Type", "application/json"}, header...)...)
}

// runWorker runs a worker of sched with handlers until the test ends.
func runWorker(t *testing.T, sched *scheduler.Scheduler, handlers map[string]scheduler.HandlerFunc, opts ...scheduler.WorkerOption) {
	t.Helper()
	w, err := sched.NewWorker(opts...)
	require.NoError(t, err)
	for typ, h := range handlers {
		w.Handle(typ, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("worker did not stop")
		}
	})
}
