package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 15 * time.Second

// start runs the example on a free port and returns its API URL and a
// function that stops it and returns run's result.
func start(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		_ = pw.CloseWithError(io.EOF)
		done <- err
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(wait):
			t.Fatal("run did not return")
			return nil
		}
	}
	select {
	case line := <-lines:
		url, ok := strings.CutPrefix(line, "serving the scheduler API at ")
		require.True(t, ok, line)
		return url, stop
	case err := <-done:
		t.Fatalf("run ended: %v", err)
	case <-time.After(wait):
		t.Fatal("no URL printed")
	}
	return "", nil
}

func call(t *testing.T, method, url, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestServesTheDemoTasks(t *testing.T) {
	api, stop := start(t)
	require.True(t, strings.HasSuffix(api, "/scheduler/"), api)

	code, body := call(t, http.MethodGet, strings.TrimSuffix(api, "scheduler/"), "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "application's own route")
	code, _ = call(t, http.MethodGet, api+"healthz", "")
	require.Equal(t, http.StatusOK, code)

	submit := func(body string) string {
		t.Helper()
		code, b := call(t, http.MethodPost, api+"submit", body)
		require.Equal(t, http.StatusAccepted, code, "%s", b)
		var task scheduler.Task
		require.NoError(t, json.Unmarshal(b, &task))
		return task.ID
	}
	final := func(id string) *scheduler.Task {
		t.Helper()
		var task scheduler.Task
		require.Eventually(t, func() bool {
			code, b := call(t, http.MethodGet, api+"status/"+id, "")
			return code == http.StatusOK && json.Unmarshal(b, &task) == nil && task.State.Terminal()
		}, wait, 5*time.Millisecond)
		return &task
	}
	sleep := submit(`{"type":"demo.sleep","payload":{"ms":20}}`)
	flaky := submit(`{"type":"demo.flaky","payload":{"fail_first":1}}`)
	panics := submit(`{"type":"demo.panic","max_retries":0}`)

	got := final(sleep)
	require.Equal(t, scheduler.StateSucceeded, got.State)
	require.JSONEq(t, `{"slept_ms":20}`, string(got.Result))
	got = final(flaky)
	require.Equal(t, scheduler.StateSucceeded, got.State)
	require.Equal(t, 2, got.Attempt)
	got = final(panics)
	require.Equal(t, scheduler.StateDead, got.State)
	require.Contains(t, got.LastError, "panic: demo.panic")

	code, body = call(t, http.MethodGet, api+"metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `scheduler_tasks_submitted_total{priority="5",queue="default",type="demo.sleep"} 1`)
	require.Contains(t, string(body), "go_goroutines")

	require.NoError(t, stop())
}

func TestToken(t *testing.T) {
	api, stop := start(t, "-token", "s3cret")
	code, _ := call(t, http.MethodGet, api+"healthz", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = call(t, http.MethodGet, api+"healthz", "", "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, stop())
}

func TestFlags(t *testing.T) {
	require.Error(t, run(context.Background(), []string{"-nope"}, io.Discard, io.Discard))
	require.Error(t, run(context.Background(), []string{"extra"}, io.Discard, io.Discard))
	require.ErrorIs(t, run(context.Background(), []string{"-h"}, io.Discard, io.Discard), flag.ErrHelp)
	require.Error(t, run(context.Background(), []string{"-addr", "256.0.0.1:1"}, io.Discard, io.Discard))
	// Nothing listens on port 1: both fail at once, naming the flag.
	err := run(context.Background(), []string{"-redis", "127.0.0.1:1"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "-redis 127.0.0.1:1")
	err = run(context.Background(), []string{"-amqp", "amqp://guest:guest@127.0.0.1:1/"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "-amqp")
}

// TestOnRedisAndRabbitMQ runs the demo tasks on the real backends, under a
// namespace of its own that it deletes afterwards.
func TestOnRedisAndRabbitMQ(t *testing.T) {
	redisAddr, amqpURL := testenv.Servers(t)
	ns := testenv.Namespace(t, redisAddr, amqpURL, "httpmount-test")

	api, stop := start(t, "-redis", redisAddr, "-amqp", amqpURL, "-namespace", ns)
	code, body := call(t, http.MethodGet, api+"healthz", "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	ids := map[string]string{}
	for typ, body := range map[string]string{
		"demo.sleep": `{"type":"demo.sleep","payload":{"ms":20}}`,
		"demo.flaky": `{"type":"demo.flaky","payload":{"fail_first":1}}`,
		"demo.panic": `{"type":"demo.panic","max_retries":0}`,
	} {
		code, b := call(t, http.MethodPost, api+"submit", body)
		require.Equal(t, http.StatusAccepted, code, "%s", b)
		var task scheduler.Task
		require.NoError(t, json.Unmarshal(b, &task))
		ids[typ] = task.ID
	}
	want := map[string]scheduler.State{"demo.sleep": scheduler.StateSucceeded, "demo.flaky": scheduler.StateSucceeded, "demo.panic": scheduler.StateDead}
	for typ, id := range ids {
		require.Eventually(t, func() bool {
			code, b := call(t, http.MethodGet, api+"status/"+id, "")
			var task scheduler.Task
			return code == http.StatusOK && json.Unmarshal(b, &task) == nil && task.State == want[typ]
		}, wait, 10*time.Millisecond, typ)
	}
	code, body = call(t, http.MethodGet, api+"metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "scheduler_broker_reconnects_total 0", "the RabbitMQ broker's reconnects are reported")
	require.Contains(t, string(body), `scheduler_tasks{state="succeeded"} 2`)
	require.NoError(t, stop())
}
