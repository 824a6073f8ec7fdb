package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/demo"
	"github.com/dtsched/scheduler/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait on a condition.
const wait = 60 * time.Second

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigFlagsBeatEnvironment(t *testing.T) {
	cfg, err := parseConfig(
		[]string{"-role", "worker", "-amqp", "amqp://a/", "-amqp", "amqp://b/,amqp://c/", "-concurrency", "3"},
		env(map[string]string{
			"SCHEDULER_ROLE":             "api",
			"SCHEDULER_AMQP":             "amqp://env/",
			"SCHEDULER_CONCURRENCY":      "7",
			"SCHEDULER_QUEUES":           "critical, default",
			"SCHEDULER_SHUTDOWN_TIMEOUT": "5s",
			"SCHEDULER_WORKER_ID":        "node-7",
		}), io.Discard)
	require.NoError(t, err)
	require.Equal(t, roleWorker, cfg.role)
	require.Equal(t, []string{"amqp://a/", "amqp://b/", "amqp://c/"}, cfg.amqp)
	require.Equal(t, 3, cfg.concurrency)
	require.Equal(t, []string{"critical", "default"}, cfg.queues, "from the environment")
	require.Equal(t, 5*time.Second, cfg.shutdownTimeout)
	require.Equal(t, "node-7", cfg.id)
	require.False(t, cfg.serves(), "a worker serves HTTP only when given -addr")
	require.True(t, cfg.works())
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	require.Equal(t, roleBoth, cfg.role)
	require.Equal(t, "127.0.0.1:8080", cfg.addr)
	require.Equal(t, []string{"default"}, cfg.queues)
	require.Equal(t, []string{"amqp://guest:guest@127.0.0.1:5672/"}, cfg.amqp)
	require.NotEmpty(t, cfg.id)

	cfg, err = parseConfig([]string{"-role", "api"}, env(nil), io.Discard)
	require.NoError(t, err)
	require.True(t, cfg.serves())
	require.False(t, cfg.works())
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-role", "boss"}, want: `-role: want api, worker or both, got "boss"`},
		{args: []string{"-concurrency", "0"}, want: "-concurrency: want at least 1"},
		{args: []string{"-queues", ","}, want: "-queues: give at least one queue"},
		{args: []string{"-retry-base", "2s", "-retry-max", "1s"}, want: "-retry-max (1s) is shorter than -retry-base (2s)"},
		{args: []string{"-failpoint", "nowhere"}, want: `unknown failpoint "nowhere"`},
		{args: []string{"stray"}, want: "unexpected arguments: stray"},
		{env: map[string]string{"SCHEDULER_HEARTBEAT": "often"}, want: "$SCHEDULER_HEARTBEAT"},
		{args: []string{"-sweep", "-1s"}, want: "-sweep: must be positive"},
	} {
		_, err := parseConfig(tc.args, env(tc.env), io.Discard)
		require.ErrorContains(t, err, tc.want, "%v %v", tc.args, tc.env)
	}
	_, err := parseConfig([]string{"-h"}, env(nil), io.Discard)
	require.ErrorIs(t, err, flag.ErrHelp)
}

func TestRedisOptions(t *testing.T) {
	o, err := redisOptions("redis://:secret@10.0.0.1:6380/2")
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:6380", o.Addr)
	require.Equal(t, 2, o.DB)
	require.Equal(t, "secret", o.Password)
	o, err = redisOptions("127.0.0.1:6379")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6379", o.Addr)
	_, err = redisOptions("localhost")
	require.ErrorContains(t, err, "want host:port")
	require.Equal(t, []string{"amqp://guest:xxxxx@rabbit:5672/", "amqp://rabbit/"},
		redactURLs([]string{"amqp://guest:guest@rabbit:5672/", "amqp://rabbit/"}))
}

func TestExecLogRecordsStartEndAndPanics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.log")
	l, err := openExecLog(path, "w1")
	require.NoError(t, err)
	defer l.Close()
	ok := l.wrap(func(context.Context, *scheduler.Task) error { return nil })
	fail := l.wrap(func(context.Context, *scheduler.Task) error { return errors.New("boom") })
	panics := l.wrap(func(context.Context, *scheduler.Task) error { panic("oops") })
	before := time.Now()

	require.NoError(t, ok(context.Background(), &scheduler.Task{ID: "a", Type: "t", Attempt: 1}))
	require.EqualError(t, fail(context.Background(), &scheduler.Task{ID: "b", Type: "t", Attempt: 2}), "boom")
	require.PanicsWithValue(t, "oops", func() { _ = panics(context.Background(), &scheduler.Task{ID: "c", Type: "t", Attempt: 3}) })
	after := time.Now()

	got := readExecLog(t, path)
	// Every event carries its time, in order, within the calls.
	prev := before
	for i := range got {
		require.False(t, got[i].T.Before(prev), "event %d at %s, before %s", i, got[i].T, prev)
		require.False(t, got[i].T.After(after), "event %d at %s, after the calls", i, got[i].T)
		prev = got[i].T
		got[i].T = time.Time{}
	}
	require.Equal(t, []demo.ExecEvent{
		{Ev: "start", ID: "a", Type: "t", Attempt: 1, Worker: "w1"},
		{Ev: "end", ID: "a", Type: "t", Attempt: 1, Worker: "w1"},
		{Ev: "start", ID: "b", Type: "t", Attempt: 2, Worker: "w1"},
		{Ev: "end", ID: "b", Type: "t", Attempt: 2, Worker: "w1", Err: "boom"},
		{Ev: "start", ID: "c", Type: "t", Attempt: 3, Worker: "w1"},
		{Ev: "end", ID: "c", Type: "t", Attempt: 3, Worker: "w1", Err: "panic: oops"},
	}, got)
}

func readExecLog(t *testing.T, path string) []demo.ExecEvent {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []demo.ExecEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e demo.ExecEvent
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "line %q", sc.Text())
		out = append(out, e)
	}
	require.NoError(t, sc.Err())
	return out
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBothRolesInOneProcess runs the program in-process as an API and a
// worker on the real servers: demo tasks reach their final states, the
// execution log agrees, /metrics answers, and the end of ctx drains.
func TestBothRolesInOneProcess(t *testing.T) {
	redisAddr, amqpURL := testenv.Servers(t)
	ns := testenv.Namespace(t, redisAddr, amqpURL, "distributed-test")
	execPath := filepath.Join(t.TempDir(), "exec.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-namespace", ns, "-id", ns, "-retry-base", "50ms", "-retry-max", "200ms"},
			env(map[string]string{"SCHEDULER_REDIS": redisAddr, "SCHEDULER_AMQP": amqpURL, "SCHEDULER_EXEC_LOG": execPath}),
			&stdout, &stderr)
	}()
	var base string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			require.NoError(t, err, "stderr: %s", stderr.String())
		default:
		}
		_, rest, ok := strings.Cut(stdout.String(), "serving the scheduler API at ")
		base, _, _ = strings.Cut(rest, "\n")
		return ok && strings.HasSuffix(rest, "\n")
	}, wait, 10*time.Millisecond)

	want := map[string]scheduler.State{}
	for body, state := range map[string]scheduler.State{
		`{"type":"demo.sleep","payload":{"ms":20}}`:                     scheduler.StateSucceeded,
		`{"type":"demo.flaky","payload":{"fail_first":2}}`:              scheduler.StateSucceeded,
		`{"type":"demo.panic","max_retries":1}`:                         scheduler.StateDead,
		`{"type":"demo.sleep","payload":{"ms":-1}}`:                     scheduler.StateDead,
		`{"type":"demo.flaky","payload":{"fail_first":9},"priority":9}`: scheduler.StateDead,
	} {
		task := post(t, base+"submit", body)
		want[task.ID] = state
	}
	for id, state := range want {
		require.Eventually(t, func() bool { return get(t, base+"status/"+id).State.Terminal() }, wait, 10*time.Millisecond)
		task := get(t, base+"status/"+id)
		require.Equal(t, state, task.State, "task %s: %+v", id, task)
		require.Equal(t, ns, task.WorkerID)
	}

	// The execution log has one start and one end per attempt the store
	// counted, in order.
	runs := map[string][]demo.ExecEvent{}
	for _, e := range readExecLog(t, execPath) {
		runs[e.ID] = append(runs[e.ID], e)
	}
	for id := range want {
		task := get(t, base+"status/"+id)
		evs := runs[id]
		require.Len(t, evs, 2*task.Attempt, "task %s", id)
		for i, e := range evs {
			require.Equal(t, i/2+1, e.Attempt)
			require.Equal(t, []string{"start", "end"}[i%2], e.Ev)
		}
		last := evs[len(evs)-1]
		require.Equal(t, task.State == scheduler.StateSucceeded, last.Err == "", "task %s: %+v", id, task)
		if task.State == scheduler.StateDead {
			require.Contains(t, task.LastError, strings.TrimPrefix(last.Err, "panic: "), "task %s", id)
		}
	}

	resp, err := http.Get(base + "metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `scheduler_tasks{state="dead"} 3`)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "stderr: %s", stderr.String())
	case <-time.After(wait):
		t.Fatal("run did not return after its context ended")
	}
	require.Contains(t, stderr.String(), `"msg":"drained"`)
}

// post submits body to url and returns the task answered with 202.
func post(t *testing.T, url, body string) *scheduler.Task {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var task scheduler.Task
	readJSON(t, resp, http.StatusAccepted, &task)
	return &task
}

// get returns the task answered with 200 at url.
func get(t *testing.T, url string) *scheduler.Task {
	t.Helper()
	var task scheduler.Task
	getJSON(t, url, &task)
	return &task
}

// getJSON decodes into v the answer, 200, at url.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	readJSON(t, resp, http.StatusOK, v)
}

// readJSON checks that resp has status code and decodes its body into v.
func readJSON(t *testing.T, resp *http.Response, code int, v any) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, code, resp.StatusCode, "%s", b)
	require.NoError(t, json.Unmarshal(b, v), "%s", b)
}
