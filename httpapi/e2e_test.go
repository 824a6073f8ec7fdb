package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	"github.com/dtsched/scheduler/metrics"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// client talks to a real server over loopback.
type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, contentType, body string, header ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// TestEndToEnd drives the real handler, mounted under a prefix beside the
// application's own routes, over a real connection: submit, poll the
// status until a worker has run the task, scrape the metrics and see them
// move; bad input in between gets its JSON error and the server serves on.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	broker := membroker.New()
	defer broker.Close()
	sched, err := scheduler.New(m.InstrumentBroker(broker), m.InstrumentStore(memstore.New()), scheduler.WithObserver(m),
		scheduler.WithRetryPolicy(func(int, error) time.Duration { return time.Millisecond }))
	require.NoError(t, err)
	defer sched.Close()
	require.NoError(t, m.Watch(sched))
	api, err := httpapi.New(sched, httpapi.WithGatherer(reg), httpapi.WithBearerToken("tok"))
	require.NoError(t, err)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app route\n") })
	mux.Handle("/api/", http.StripPrefix("/api", api))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := client{t: t, base: srv.URL}
	auth := []string{"Authorization", "Bearer tok"}

	runWorker(t, sched, map[string]scheduler.HandlerFunc{
		"demo.echo": func(_ context.Context, task *scheduler.Task) error {
			task.Result = task.Payload
			return nil
		},
		"demo.flaky": func(_ context.Context, task *scheduler.Task) error {
			if task.Attempt < 3 {
				return errors.New("not yet")
			}
			return nil
		},
	})

	res := c.do(http.MethodGet, "/hello", "", "")
	require.Equal(t, "app route\n", string(res.body), "the application's own routes still work")
	require.Equal(t, http.StatusUnauthorized, c.do(http.MethodGet, "/api/metrics", "", "").code)
	c.do(http.MethodGet, "/api/healthz", "", "", auth...)

	scrape := func() map[string]float64 {
		t.Helper()
		res := c.do(http.MethodGet, "/api/metrics", "", "", auth...)
		require.Equal(t, http.StatusOK, res.code)
		out := map[string]float64{}
		for _, line := range strings.Split(string(res.body), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			require.NoError(t, err, line)
			out[line[:i]] = v
		}
		return out
	}
	before := scrape()
	require.Equal(t, 0.0, before[`scheduler_tasks{state="succeeded"}`])

	submit := func(body string) string {
		t.Helper()
		res := c.do(http.MethodPost, "/api/submit", "application/json", body, auth...)
		require.Equal(t, http.StatusAccepted, res.code, "%s", res.body)
		task := res.task(t)
		require.Equal(t, "/api/status/"+task.ID, res.header.Get("Location"))
		return res.header.Get("Location")
	}
	poll := func(location string, want scheduler.State) *scheduler.Task {
		t.Helper()
		var last *scheduler.Task
		require.Eventually(t, func() bool {
			res := c.do(http.MethodGet, location, "", "", auth...)
			if res.code != http.StatusOK {
				return false
			}
			last = res.task(t)
			return last.State == want
		}, wait, 2*time.Millisecond, "last seen: %+v", last)
		return last
	}

	echo := submit(`{"type":"demo.echo","payload":{"hello":"world"},"priority":9}`)
	// Bad input meanwhile: JSON errors, and the server keeps serving.
	for _, bad := range []struct {
		method, path, ct, body string
		status                 int
	}{
		{http.MethodPost, "/api/submit", "application/json", `{"type":`, 400},
		{http.MethodPost, "/api/submit", "application/json", `{"type":"a","priority":99}`, 400},
		{http.MethodPost, "/api/submit", "text/plain", `{"type":"a"}`, 415},
		{http.MethodPost, "/api/submit", "application/json", `{"type":"a","payload":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
		{http.MethodGet, "/api/status/..%2F..%2Fetc%2Fpasswd", "", "", 400},
		{http.MethodGet, "/api/status/0190f7a2-0000-7000-8000-000000000000", "", "", 404},
		{http.MethodDelete, "/api/status/x", "", "", 405},
	} {
		res := c.do(bad.method, bad.path, bad.ct, bad.body, auth...)
		require.Equal(t, bad.status, res.code, "%s %s: %s", bad.method, bad.path, res.body)
		res.errorCode(t)
	}
	flaky := submit(`{"type":"demo.flaky","max_retries":5}`)

	done := poll(echo, scheduler.StateSucceeded)
	require.JSONEq(t, `{"hello":"world"}`, string(done.Result))
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, 3, poll(flaky, scheduler.StateSucceeded).Attempt)

	// Workers report events just after storing the state the poll saw.
	var after map[string]float64
	require.Eventually(t, func() bool {
		after = scrape()
		return after[`scheduler_tasks_finished_total{state="succeeded",type="demo.echo"}`] == 1 &&
			after[`scheduler_tasks_finished_total{state="succeeded",type="demo.flaky"}`] == 1
	}, wait, time.Millisecond)
	require.Equal(t, 1.0, after[`scheduler_tasks_submitted_total{priority="9",queue="default",type="demo.echo"}`]-
		before[`scheduler_tasks_submitted_total{priority="9",queue="default",type="demo.echo"}`])
	require.Equal(t, 1.0, after[`scheduler_tasks_finished_total{state="succeeded",type="demo.echo"}`])
	require.Equal(t, 1.0, after[`scheduler_tasks_finished_total{state="succeeded",type="demo.flaky"}`])
	require.Equal(t, 2.0, after[`scheduler_task_retries_total{type="demo.flaky"}`])
	require.Equal(t, 2.0, after[`scheduler_task_run_duration_seconds_count{outcome="failed",type="demo.flaky"}`])
	require.Equal(t, 4.0, after[`scheduler_task_queue_wait_seconds_count{queue="default"}`])
	require.Equal(t, 2.0, after[`scheduler_tasks{state="succeeded"}`])
	require.Equal(t, 0.0, after[`scheduler_queue_depth{queue="default"}`])
	require.Eventually(t, func() bool { return scrape()[`scheduler_workers`] == 1 }, wait, time.Millisecond)
	require.Equal(t, 0.0, after[`scheduler_tasks_in_flight{type="demo.flaky"}`])

	// The listing and the workers agree.
	res = c.do(http.MethodGet, "/api/tasks?state=succeeded", "", "", auth...)
	require.Equal(t, http.StatusOK, res.code)
	var list struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal(res.body, &list))
	require.Len(t, list.Tasks, 2)
	res = c.do(http.MethodGet, "/api/workers", "", "", auth...)
	require.Equal(t, http.StatusOK, res.code)
	require.Contains(t, string(res.body), `"in_flight"`)
	srv.CloseClientConnections()
}
