package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestStatusUnknownAndMalformedIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const unknown = "0190f7a2-0000-7000-8000-000000000000"
	for _, target := range []string{"/status/" + unknown, "/tasks/" + unknown} {
		res := do(t, e.h, http.MethodGet, target, nil)
		require.Equal(t, http.StatusNotFound, res.code, target)
		require.Equal(t, httpapi.CodeTaskNotFound, res.errorCode(t))
	}
	for _, target := range []string{"/tasks/" + unknown + "/cancel", "/tasks/" + unknown + "/retry"} {
		res := do(t, e.h, http.MethodPost, target, nil)
		require.Equal(t, http.StatusNotFound, res.code, target)
		require.Equal(t, httpapi.CodeTaskNotFound, res.errorCode(t))
	}
	require.Equal(t, []string{unknown, unknown, unknown, unknown}, e.store.seen())

	malformed := []string{
		"..%2F..%2Fetc%2Fpasswd", // path traversal, escaped
		"%2e%2e",                 // ".."
		"a%2Fb",                  // a slash inside the segment
		"a%00b",                  // NUL
		"%00",
		strings.Repeat("a", 10<<10), // 10 KB
		"*", "task*", "%3F", "a%20b", "%5B0-9%5D", "%7B%7D", "a:b", "a.b", "%E2%80%AE", "%25",
	}
	for _, id := range malformed {
		for _, r := range []struct{ method, target string }{
			{http.MethodGet, "/status/" + id},
			{http.MethodGet, "/tasks/" + id},
			{http.MethodPost, "/tasks/" + id + "/cancel"},
			{http.MethodPost, "/tasks/" + id + "/retry"},
		} {
			res := do(t, e.h, r.method, r.target, nil)
			require.Equal(t, http.StatusBadRequest, res.code, "%s %.60s: %s", r.method, r.target, res.body)
			require.Equal(t, httpapi.CodeInvalidID, res.errorCode(t))
			require.Equal(t, "id", res.field(t))
		}
	}
	// Unescaped traversal and empty segments never reach a route (nor are
	// they redirected out of the mount point).
	for _, target := range []string{"/status/../../etc/passwd", "/status/./x", "/status//x", "//status/x", "/tasks/x/../../submit"} {
		res := do(t, e.h, http.MethodGet, target, nil)
		require.Equal(t, http.StatusBadRequest, res.code, target)
		require.Equal(t, httpapi.CodeInvalidPath, res.errorCode(t))
		require.Empty(t, res.header.Get("Location"))
	}
	require.Len(t, e.store.seen(), 4, "no backend call was made for a malformed id")
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.WithGatherer(prometheus.NewRegistry()))
	for _, tc := range []struct{ method, target, allow string }{
		{http.MethodGet, "/submit", "POST"},
		{http.MethodPut, "/submit", "POST"},
		{http.MethodDelete, "/status/abc", "GET, HEAD"},
		{http.MethodPost, "/status/abc", "GET, HEAD"},
		{http.MethodPost, "/tasks", "GET, HEAD"},
		{http.MethodDelete, "/tasks/abc", "GET, HEAD"},
		{http.MethodGet, "/tasks/abc/cancel", "POST"},
		{http.MethodGet, "/tasks/abc/retry", "POST"},
		{http.MethodPost, "/workers", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodPost, "/metrics", "GET, HEAD"},
	} {
		res := do(t, e.h, tc.method, tc.target, strings.NewReader(`{}`))
		require.Equal(t, http.StatusMethodNotAllowed, res.code, "%s %s", tc.method, tc.target)
		require.Equal(t, tc.allow, res.header.Get("Allow"), "%s %s", tc.method, tc.target)
		require.Equal(t, httpapi.CodeMethodNotAllowed, res.errorCode(t))
	}
	require.Empty(t, e.store.seen())
	res := do(t, e.h, http.MethodHead, "/healthz", nil)
	require.Equal(t, http.StatusOK, res.code)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // no gatherer: /metrics is not routed
	for _, target := range []string{"/", "/nope", "/metrics", "/status/", "/tasks/abc/delete", "/submit/", "/healthz/x"} {
		res := do(t, e.h, http.MethodGet, target, nil)
		require.Equal(t, http.StatusNotFound, res.code, target)
		require.Equal(t, httpapi.CodeNotFound, res.errorCode(t), target)
	}
}

func TestCancelAndRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := post(t, e.h, `{"type":"a","delay":"1h"}`).task(t).ID

	res := do(t, e.h, http.MethodPost, "/tasks/"+id+"/cancel", nil)
	require.Equal(t, http.StatusOK, res.code, "%s", res.body)
	require.Equal(t, scheduler.StateCanceled, res.task(t).State)
	res = do(t, e.h, http.MethodPost, "/tasks/"+id+"/cancel", nil)
	require.Equal(t, http.StatusConflict, res.code)
	require.Equal(t, httpapi.CodeTaskFinished, res.errorCode(t))

	res = do(t, e.h, http.MethodPost, "/tasks/"+id+"/retry", nil)
	require.Equal(t, http.StatusOK, res.code, "%s", res.body)
	require.Equal(t, scheduler.StatePending, res.task(t).State)
	res = do(t, e.h, http.MethodPost, "/tasks/"+id+"/retry", nil)
	require.Equal(t, http.StatusConflict, res.code)
	require.Equal(t, httpapi.CodeNotRetryable, res.errorCode(t))
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ids []string
	for i, body := range []string{
		`{"type":"mail","queue":"q1"}`,
		`{"type":"mail","queue":"q2"}`,
		`{"type":"thumb","queue":"q1","delay":"1h"}`,
		`{"type":"thumb","queue":"q1"}`,
		`{"type":"mail","queue":"q1"}`,
	} {
		res := post(t, e.h, body)
		require.Equal(t, http.StatusAccepted, res.code, "%d", i)
		ids = append(ids, res.task(t).ID)
	}
	list := func(query string) (tasks []string, next string) {
		t.Helper()
		res := do(t, e.h, http.MethodGet, "/tasks"+query, nil)
		require.Equal(t, http.StatusOK, res.code, "%s: %s", query, res.body)
		var body struct {
			Tasks      []*scheduler.Task `json:"tasks"`
			NextCursor string            `json:"next_cursor"`
		}
		require.NoError(t, json.Unmarshal(res.body, &body))
		require.NotNil(t, body.Tasks, "tasks is an array, never null")
		for _, task := range body.Tasks {
			tasks = append(tasks, task.ID)
		}
		return tasks, body.NextCursor
	}
	all, next := list("")
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, all, "newest first")
	require.Empty(t, next)
	got, _ := list("?type=mail&queue=q1")
	require.Equal(t, []string{ids[4], ids[0]}, got)
	got, _ = list("?state=scheduled")
	require.Equal(t, []string{ids[2]}, got)
	got, _ = list("?state=dead")
	require.Empty(t, got)

	var paged []string
	cursor := ""
	for range 10 {
		page, next := list("?limit=2&cursor=" + cursor)
		require.LessOrEqual(t, len(page), 2)
		paged = append(paged, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, all, paged)

	for _, tc := range []struct{ query, code, field string }{
		{"?state=lost", httpapi.CodeInvalidField, "state"},
		{"?type=a%20b", httpapi.CodeInvalidField, "type"},
		{"?queue=a/b", httpapi.CodeInvalidField, "queue"},
		{"?cursor=..%2Fx", httpapi.CodeInvalidField, "cursor"},
		{"?limit=0", httpapi.CodeInvalidField, "limit"},
		{"?limit=1001", httpapi.CodeInvalidField, "limit"},
		{"?limit=ten", httpapi.CodeInvalidField, "limit"},
		{"?limit=-1", httpapi.CodeInvalidField, "limit"},
		{"?status=dead", httpapi.CodeInvalidQuery, "status"},
		{"?state=dead&state=pending", httpapi.CodeInvalidQuery, "state"},
		{"?state=%zz", httpapi.CodeInvalidQuery, ""},
		{"?state=dead;limit=2", httpapi.CodeInvalidQuery, ""},
	} {
		res := do(t, e.h, http.MethodGet, "/tasks"+tc.query, nil)
		require.Equal(t, http.StatusBadRequest, res.code, tc.query)
		require.Equal(t, tc.code, res.errorCode(t), tc.query)
		require.Equal(t, tc.field, res.field(t), tc.query)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := do(t, e.h, http.MethodGet, "/workers", nil)
	require.Equal(t, http.StatusOK, res.code)
	require.JSONEq(t, `{"workers":[]}`, string(res.body))

	runWorker(t, e.sched, nil, scheduler.WithWorkerID("node-a"), scheduler.WithQueues("q1", "q2"), scheduler.WithConcurrency(3))
	var body struct {
		Workers []scheduler.WorkerInfo `json:"workers"`
	}
	require.Eventually(t, func() bool {
		res := do(t, e.h, http.MethodGet, "/workers", nil)
		return res.code == http.StatusOK && json.Unmarshal(res.body, &body) == nil && len(body.Workers) == 1
	}, wait, time.Millisecond)
	w := body.Workers[0]
	require.Equal(t, "node-a", w.ID)
	require.Equal(t, []string{"q1", "q2"}, w.Queues)
	require.Equal(t, 3, w.Concurrency)
	require.False(t, w.LastBeat.IsZero())
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := do(t, e.h, http.MethodGet, "/schedules", nil)
	require.Equal(t, http.StatusOK, res.code)
	require.JSONEq(t, `{"schedules":[]}`, string(res.body))

	require.NoError(t, e.sched.RegisterPeriodic(scheduler.Periodic{Name: "nightly-report", Spec: "30 2 * * *", Type: "report.build"}))
	res = do(t, e.h, http.MethodGet, "/schedules", nil)
	require.Equal(t, http.StatusOK, res.code)
	var body struct {
		Schedules []map[string]any `json:"schedules"`
	}
	require.NoError(t, json.Unmarshal(res.body, &body))
	require.Len(t, body.Schedules, 1)
	got := body.Schedules[0]
	require.Equal(t, "nightly-report", got["name"])
	require.Equal(t, "30 2 * * *", got["spec"])
	require.Equal(t, "report.build", got["type"])
	require.Equal(t, "UTC", got["time_zone"])
	next, err := time.Parse(time.RFC3339, got["next"].(string))
	require.NoError(t, err)
	require.Equal(t, 2, next.Hour())
	require.Equal(t, 30, next.Minute())

	res = do(t, e.h, http.MethodPost, "/schedules", nil)
	require.Equal(t, http.StatusMethodNotAllowed, res.code)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := do(t, e.h, http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusOK, res.code)
	require.JSONEq(t, `{"status":"ok","checks":{"broker":"ok","store":"ok"}}`, string(res.body))

	e.store.down.Store(true)
	res = do(t, e.h, http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.Equal(t, httpapi.CodeUnhealthy, res.errorCode(t))
	require.JSONEq(t, `{"error":{"code":"unhealthy","message":"store unavailable"},"status":"unavailable","checks":{"broker":"ok","store":"unavailable"}}`, string(res.body))

	e.store.down.Store(false)
	require.NoError(t, e.broker.Close())
	res = do(t, e.h, http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.JSONEq(t, `{"error":{"code":"unhealthy","message":"broker unavailable"},"status":"unavailable","checks":{"broker":"unavailable","store":"ok"}}`, string(res.body))

	// A closed Scheduler takes its node out of a load balancer.
	require.NoError(t, e.sched.Close())
	res = do(t, e.h, http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.JSONEq(t, `{"error":{"code":"unavailable","message":"the scheduler is closed"},"status":"unavailable","checks":{}}`, string(res.body))
}

// slowStore never answers Get before the caller gives up.
type slowStore struct{ scheduler.Store }

func (slowStore) Get(ctx context.Context, _ string) (*scheduler.Task, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// corruptStore reads every task as a record something else wrote.
type corruptStore struct{ scheduler.Store }

func (corruptStore) Get(_ context.Context, id string) (*scheduler.Task, error) {
	return nil, fmt.Errorf("store: record of %s: %w", id, scheduler.ErrCorruptTask)
}

func TestUnreadableTaskGives500(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.ErrorLevel)
	b := membroker.New()
	defer b.Close()
	sched, err := scheduler.New(b, corruptStore{memstore.New()})
	require.NoError(t, err)
	defer sched.Close()
	h, err := httpapi.New(sched, httpapi.WithLogger(zap.New(core)))
	require.NoError(t, err)
	res := do(t, h, http.MethodGet, "/status/01a21e00-a091-7c40-a771-98bcbd57b66a", nil)
	require.Equal(t, http.StatusInternalServerError, res.code)
	require.Equal(t, httpapi.CodeInternal, res.errorCode(t))
	require.Equal(t, 1, logs.FilterMessage("unreadable task record").Len())
}

func TestBackendDownGives503(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.ErrorLevel)
	e := newEnv(t, httpapi.WithLogger(zap.New(core)))
	id := post(t, e.h, `{"type":"a","delay":"1h"}`).task(t).ID
	e.store.down.Store(true)
	for _, r := range []struct{ method, target string }{
		{http.MethodGet, "/status/" + id},
		{http.MethodGet, "/tasks"},
		{http.MethodGet, "/workers"},
		{http.MethodPost, "/tasks/" + id + "/cancel"},
		{http.MethodPost, "/tasks/" + id + "/retry"},
	} {
		res := do(t, e.h, r.method, r.target, nil)
		require.Equal(t, http.StatusServiceUnavailable, res.code, r.target)
		require.Equal(t, httpapi.CodeBackendUnavailable, res.errorCode(t))
	}
	require.Equal(t, 5, logs.FilterMessage("backend call failed").Len())

	// A backend that hangs is given up on after the backend timeout.
	b := membroker.New()
	defer b.Close()
	sched, err := scheduler.New(b, slowStore{memstore.New()})
	require.NoError(t, err)
	defer sched.Close()
	h, err := httpapi.New(sched, httpapi.WithBackendTimeout(20*time.Millisecond))
	require.NoError(t, err)
	res := do(t, h, http.MethodGet, "/status/"+id, nil)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.Equal(t, httpapi.CodeBackendUnavailable, res.errorCode(t))

	// A closed scheduler.
	require.NoError(t, sched.Close())
	res = post(t, h, `{"type":"a"}`)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.Equal(t, httpapi.CodeUnavailable, res.errorCode(t))
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, httpapi.WithBearerToken("s3cret"))
	for _, auth := range []string{"", "s3cret", "Basic czNjcmV0", "Bearer", "Bearer ", "Bearer s3cre", "Bearer s3cret2"} {
		var header []string
		if auth != "" {
			header = []string{"Authorization", auth}
		}
		for _, target := range []string{"/healthz", "/status/x", "/nope"} {
			res := do(t, e.h, http.MethodGet, target, nil, header...)
			require.Equal(t, http.StatusUnauthorized, res.code, "%q %s", auth, target)
			require.Equal(t, httpapi.CodeUnauthorized, res.errorCode(t))
			require.True(t, strings.HasPrefix(res.header.Get("WWW-Authenticate"), `Bearer realm="scheduler"`))
		}
	}
	require.Empty(t, e.store.seen())
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret"} {
		res := do(t, e.h, http.MethodGet, "/healthz", nil, "Authorization", auth)
		require.Equal(t, http.StatusOK, res.code, auth)
	}
	res := post(t, e.h, `{"type":"a"}`, "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusAccepted, res.code)
}

func TestMiddlewareAndRecover(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	var order []string
	mw := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				if r.Header.Get("X-Panic") == name {
					panic("middleware " + name + " broke")
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	e := newEnv(t, httpapi.WithMiddleware(mw("outer")), httpapi.WithMiddleware(mw("inner")), httpapi.WithLogger(zap.New(core)))
	res := do(t, e.h, http.MethodGet, "/healthz", nil)
	require.Equal(t, http.StatusOK, res.code)
	require.Equal(t, []string{"outer", "inner"}, order)

	res = do(t, e.h, http.MethodGet, "/healthz", nil, "X-Panic", "inner")
	require.Equal(t, http.StatusInternalServerError, res.code)
	require.Equal(t, httpapi.CodeInternal, res.errorCode(t))
	panics := logs.FilterMessage("panic serving request").All()
	require.Len(t, panics, 1)
	require.Equal(t, zapcore.ErrorLevel, panics[0].Level)
	require.Contains(t, panics[0].ContextMap()["stack"], "goroutine")
	// Still serving, and every request logged at debug.
	require.Equal(t, http.StatusOK, do(t, e.h, http.MethodGet, "/healthz", nil).code)
	access := logs.FilterMessage("http request").All()
	require.Len(t, access, 3)
	require.Equal(t, int64(500), access[1].ContextMap()["status"])
	require.Equal(t, "/healthz", access[2].ContextMap()["path"])
}

func TestMetricsRoute(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	e := newEnv(t, httpapi.WithGatherer(reg))
	res := do(t, e.h, http.MethodGet, "/metrics", nil)
	require.Equal(t, http.StatusOK, res.code)
	require.Contains(t, res.header.Get("Content-Type"), "text/plain")
	require.Contains(t, string(res.body), "app_things_total 3")
	require.NotContains(t, string(res.body), "go_goroutines", "not the global default registry")
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	defer b.Close()
	sched, err := scheduler.New(b, memstore.New())
	require.NoError(t, err)
	defer sched.Close()
	_, err = httpapi.New(nil)
	require.Error(t, err)
	for _, o := range []httpapi.Option{
		nil,
		httpapi.WithMaxBodyBytes(0),
		httpapi.WithGatherer(nil),
		httpapi.WithBearerToken(""),
		httpapi.WithMiddleware(nil),
		httpapi.WithMiddleware(func(http.Handler) http.Handler { return nil }),
		httpapi.WithLogger(nil),
		httpapi.WithBackendTimeout(0),
	} {
		_, err := httpapi.New(sched, o)
		require.Error(t, err)
	}
}
