package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestSubmitAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", e.h))

	res := do(t, mux, http.MethodPost, "/api/submit", strings.NewReader(`{
		"type": "email.send",
		"payload": {"to": "ada@example.com", "html": "<b>hi</b> & bye", "n": [1, 2.5, null]},
		"priority": 7,
		"queue": "mail",
		"max_retries": 5,
		"timeout": "30s",
		"delay": 3600,
		"unique_key": "welcome:42"
	}`), "Content-Type", "application/json; charset=UTF-8")
	require.Equal(t, http.StatusAccepted, res.code, "%s", res.body)
	task := res.task(t)
	require.NoError(t, scheduler.ValidateID(task.ID))
	require.Equal(t, "/api/status/"+task.ID, res.header.Get("Location"))
	require.Equal(t, "email.send", task.Type)
	require.Equal(t, "mail", task.Queue)
	require.Equal(t, scheduler.Priority(7), task.Priority)
	require.Equal(t, 5, task.MaxRetries)
	require.Equal(t, 30*time.Second, task.Timeout)
	require.Equal(t, scheduler.StateScheduled, task.State)
	require.Equal(t, "welcome:42", task.UniqueKey)
	require.WithinDuration(t, time.Now().Add(time.Hour), task.RunAt, time.Minute)
	// The payload is the same JSON value, compact, shown as JSON.
	require.JSONEq(t, `{"to":"ada@example.com","html":"<b>hi</b> & bye","n":[1,2.5,null]}`, string(task.Payload))
	require.NotContains(t, string(res.body), "payload_base64")
	require.Contains(t, string(res.body), `"payload":{"to":"ada@example.com"`)

	// The Location answers with the same task.
	got := do(t, mux, http.MethodGet, res.header.Get("Location"), nil)
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, task.ID, got.task(t).ID)
	require.Equal(t, task.ID, do(t, mux, http.MethodGet, "/api/tasks/"+task.ID, nil).task(t).ID)
}

func TestSubmitDefaultsAndForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		body    string
		payload string // as stored; "" for none
		check   func(*scheduler.Task)
	}{
		{body: `{"type":"a"}`, check: func(task *scheduler.Task) {
			require.Equal(t, scheduler.PriorityDefault, task.Priority)
			require.Equal(t, scheduler.DefaultQueue, task.Queue)
			require.Equal(t, scheduler.DefaultMaxRetries, task.MaxRetries)
			require.Zero(t, task.Timeout)
			require.Equal(t, scheduler.StatePending, task.State)
		}},
		{body: `{"type":"a","payload":"text"}`, payload: `"text"`},
		{body: `{"type":"a","payload":42}`, payload: `42`},
		{body: `{"type":"a","payload":null}`, payload: ""}, // null is no payload
		{body: `{"type":"a","payload":{ "a" : [ 1 , 2 ] }}`, payload: `{"a":[1,2]}`},
		{body: `{"type":"a","payload":"<&>"}`, payload: `"\u003c\u0026\u003e"`},
		{body: `{"type":"a","queue":"","priority":null,"max_retries":null,"timeout":null,"delay":null,"run_at":null}`},
		{body: `{"type":"a","timeout":1.5,"max_retries":0,"priority":0}`, check: func(task *scheduler.Task) {
			require.Equal(t, 1500*time.Millisecond, task.Timeout)
			require.Zero(t, task.MaxRetries)
			require.Equal(t, scheduler.PriorityMin, task.Priority)
		}},
		{body: `{"type":"a","run_at":"2999-01-02T15:04:05Z"}`, check: func(task *scheduler.Task) {
			require.Equal(t, scheduler.StateScheduled, task.State)
			require.Equal(t, time.Date(2999, 1, 2, 15, 4, 5, 0, time.UTC), task.RunAt.UTC())
		}},
		{body: `{"type":"a","run_at":"2000-01-02T15:04:05+02:00"}`, check: func(task *scheduler.Task) {
			require.Equal(t, scheduler.StatePending, task.State, "a past run_at runs at once")
		}},
		{body: `{"type":"a","delay":"1h30m"}`, check: func(task *scheduler.Task) {
			require.WithinDuration(t, time.Now().Add(90*time.Minute), task.RunAt, time.Minute)
		}},
		{body: ` {"type":"a"}
		`},
	} {
		res := post(t, e.h, tc.body)
		require.Equal(t, http.StatusAccepted, res.code, "%s: %s", tc.body, res.body)
		task := res.task(t)
		require.Equal(t, "a", task.Type)
		require.Equal(t, tc.payload, string(task.Payload), tc.body)
		if tc.check != nil {
			tc.check(task)
		}
	}
}

func TestSubmitBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const json = "application/json"
	cases := []struct {
		name        string
		body        string
		contentType string
		header      []string
		status      int
		code        string
		field       string
	}{
		{"malformed", `{"type":`, json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"malformed syntax", `{"type" "a"}`, json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"trailing data", `{"type":"a"} {"type":"b"}`, json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"trailing garbage", `{"type":"a"}x`, json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"empty body", ``, json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"invalid utf-8", "{\"type\":\"a\",\"payload\":\"\xff\"}", json, nil, 400, httpapi.CodeMalformedJSON, ""},
		{"array body", `[{"type":"a"}]`, json, nil, 400, httpapi.CodeWrongType, ""},
		{"string body", `"a"`, json, nil, 400, httpapi.CodeWrongType, ""},
		{"unknown field", `{"type":"a","colour":"red"}`, json, nil, 400, httpapi.CodeUnknownField, "colour"},
		{"null body", `null`, json, nil, 400, httpapi.CodeWrongType, ""},
		{"member name in another case", `{"TYPE":"a"}`, json, nil, 400, httpapi.CodeUnknownField, "TYPE"},
		{"member name in mixed case", `{"type":"a","Unique_Key":"k"}`, json, nil, 400, httpapi.CodeUnknownField, "Unique_Key"},
		{"member given twice", `{"type":"a","type":"b"}`, json, nil, 400, httpapi.CodeInvalidField, "type"},
		{"type not string", `{"type":1}`, json, nil, 400, httpapi.CodeWrongType, "type"},
		{"priority string", `{"type":"a","priority":"high"}`, json, nil, 400, httpapi.CodeWrongType, "priority"},
		{"priority fraction", `{"type":"a","priority":5.5}`, json, nil, 400, httpapi.CodeWrongType, "priority"},
		{"priority overflow", `{"type":"a","priority":1e30}`, json, nil, 400, httpapi.CodeWrongType, "priority"},
		{"max_retries bool", `{"type":"a","max_retries":true}`, json, nil, 400, httpapi.CodeWrongType, "max_retries"},
		{"queue number", `{"type":"a","queue":7}`, json, nil, 400, httpapi.CodeWrongType, "queue"},
		{"timeout bool", `{"type":"a","timeout":true}`, json, nil, 400, httpapi.CodeWrongType, "timeout"},
		{"delay object", `{"type":"a","delay":{}}`, json, nil, 400, httpapi.CodeWrongType, "delay"},
		{"run_at number", `{"type":"a","run_at":5}`, json, nil, 400, httpapi.CodeWrongType, "run_at"},
		{"unique_key array", `{"type":"a","unique_key":[]}`, json, nil, 400, httpapi.CodeWrongType, "unique_key"},
		{"missing type", `{"payload":{}}`, json, nil, 400, httpapi.CodeMissingField, "type"},
		{"empty type", `{"type":""}`, json, nil, 400, httpapi.CodeMissingField, "type"},
		{"null type", `{"type":null}`, json, nil, 400, httpapi.CodeMissingField, "type"},
		{"empty object", `{}`, json, nil, 400, httpapi.CodeMissingField, "type"},
		{"priority above", `{"type":"a","priority":10}`, json, nil, 400, httpapi.CodeInvalidField, "priority"},
		{"priority below", `{"type":"a","priority":-1}`, json, nil, 400, httpapi.CodeInvalidField, "priority"},
		{"retries above", `{"type":"a","max_retries":1001}`, json, nil, 400, httpapi.CodeInvalidField, "max_retries"},
		{"retries below", `{"type":"a","max_retries":-1}`, json, nil, 400, httpapi.CodeInvalidField, "max_retries"},
		{"timeout word", `{"type":"a","timeout":"soon"}`, json, nil, 400, httpapi.CodeInvalidField, "timeout"},
		{"timeout negative", `{"type":"a","timeout":"-1s"}`, json, nil, 400, httpapi.CodeInvalidField, "timeout"},
		{"timeout negative number", `{"type":"a","timeout":-1}`, json, nil, 400, httpapi.CodeInvalidField, "timeout"},
		{"timeout huge", `{"type":"a","timeout":1e300}`, json, nil, 400, httpapi.CodeInvalidField, "timeout"},
		{"delay huge string", `{"type":"a","delay":"9999999999h"}`, json, nil, 400, httpapi.CodeInvalidField, "delay"},
		{"delay and run_at", `{"type":"a","delay":"1s","run_at":"2030-01-02T15:04:05Z"}`, json, nil, 400, httpapi.CodeInvalidField, "run_at"},
		{"run_at not rfc3339", `{"type":"a","run_at":"tomorrow"}`, json, nil, 400, httpapi.CodeInvalidField, "run_at"},
		{"type characters", `{"type":"send mail!"}`, json, nil, 400, httpapi.CodeInvalidField, "type"},
		{"type too long", `{"type":"` + strings.Repeat("t", 129) + `"}`, json, nil, 400, httpapi.CodeInvalidField, "type"},
		{"queue characters", `{"type":"a","queue":"../etc"}`, json, nil, 400, httpapi.CodeInvalidField, "queue"},
		{"unique_key control", `{"type":"a","unique_key":"a\u0001b"}`, json, nil, 400, httpapi.CodeInvalidField, "unique_key"},
		{"unique_key too long", `{"type":"a","unique_key":"` + strings.Repeat("k", 257) + `"}`, json, nil, 400, httpapi.CodeInvalidField, "unique_key"},
		{"idempotency key twice", `{"type":"a"}`, json, []string{"Idempotency-Key", "k1", "Idempotency-Key", "k2"}, 400, httpapi.CodeInvalidField, "Idempotency-Key"},
		{"idempotency key empty", `{"type":"a"}`, json, []string{"Idempotency-Key", `""`}, 400, httpapi.CodeInvalidField, "Idempotency-Key"},
		{"idempotency key too long", `{"type":"a"}`, json, []string{"Idempotency-Key", strings.Repeat("k", 257)}, 400, httpapi.CodeInvalidField, "Idempotency-Key"},
		{"idempotency key differs", `{"type":"a","unique_key":"k1"}`, json, []string{"Idempotency-Key", "k2"}, 400, httpapi.CodeInvalidField, "unique_key"},
		{"no content type", `{"type":"a"}`, "", nil, 415, httpapi.CodeUnsupportedMediaType, ""},
		{"text content type", `{"type":"a"}`, "text/plain", nil, 415, httpapi.CodeUnsupportedMediaType, ""},
		{"form content type", `type=a`, "application/x-www-form-urlencoded", nil, 415, httpapi.CodeUnsupportedMediaType, ""},
		{"other charset", `{"type":"a"}`, "application/json; charset=latin1", nil, 415, httpapi.CodeUnsupportedMediaType, ""},
		{"bad media type", `{"type":"a"}`, "application/json;;", nil, 415, httpapi.CodeUnsupportedMediaType, ""},
	}
	for _, tc := range cases {
		header := tc.header
		if tc.contentType != "" {
			header = append([]string{"Content-Type", tc.contentType}, header...)
		}
		res := do(t, e.h, http.MethodPost, "/submit", strings.NewReader(tc.body), header...)
		require.Equal(t, tc.status, res.code, "%s: %s", tc.name, res.body)
		require.Equal(t, tc.code, res.errorCode(t), "%s: %s", tc.name, res.body)
		require.Equal(t, tc.field, res.field(t), "%s: %s", tc.name, res.body)
	}
	counts, err := e.sched.Counts(context.Background())
	require.NoError(t, err)
	require.Empty(t, counts, "bad input stored nothing")
}

func TestPayloadOverSchedulerLimit(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, []scheduler.Option{scheduler.WithMaxPayload(16)})
	res := post(t, e.h, `{"type":"a","payload":"this is longer than sixteen bytes"}`)
	require.Equal(t, http.StatusBadRequest, res.code)
	require.Equal(t, httpapi.CodeInvalidField, res.errorCode(t))
	require.Equal(t, "payload", res.field(t))
}

// countingReader yields n bytes of JSON-ish filler and counts what is read.
type countingReader struct {
	n    int64
	read atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	left := c.n - c.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), left)
	for i := range p[:k] {
		p[i] = ' '
	}
	c.read.Add(k)
	return int(k), nil
}

func TestBodyOverLimitIsRefusedUnread(t *testing.T) {
	t.Parallel()
	const limit = 1024
	e := newEnv(t, httpapi.WithMaxBodyBytes(limit))

	// With a Content-Length over the limit: nothing is read.
	body := &countingReader{n: 10 << 20}
	req := httptest.NewRequest(http.MethodPost, "/submit", body)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = body.n
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	res := response{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	require.Equal(t, httpapi.CodeBodyTooLarge, res.errorCode(t))
	require.Zero(t, body.read.Load())

	// Chunked, length unknown: reading stops just past the limit.
	body = &countingReader{n: 10 << 20}
	req = httptest.NewRequest(http.MethodPost, "/submit", body)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	require.LessOrEqual(t, body.read.Load(), int64(limit+1))

	// At the limit exactly: accepted.
	doc := `{"type":"a","payload":"` + strings.Repeat("x", limit-len(`{"type":"a","payload":""}`)) + `"}`
	require.Len(t, doc, limit)
	require.Equal(t, http.StatusAccepted, post(t, e.h, doc).code)
}

func TestBodyOverDefaultLimitOverTheWire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	body := `{"type":"a","payload":"` + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `"}`
	resp, err := http.Post(srv.URL+"/submit", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Equal(t, httpapi.CodeBodyTooLarge, response{code: resp.StatusCode, header: resp.Header, body: b}.errorCode(t))
	// The server keeps serving.
	resp, err = http.Post(srv.URL+"/submit", "application/json", strings.NewReader(`{"type":"a"}`))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	srv.CloseClientConnections()
}

// getDown is a store whose Get fails while down is set.
type getDown struct {
	scheduler.Store
	down atomic.Bool
}

func (s *getDown) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Get(ctx, id)
}

// A replay whose store read fails is told to try again (503), not that it
// conflicts.
func TestIdempotencyReplayStoreDown(t *testing.T) {
	t.Parallel()
	b, s := membroker.New(), &getDown{Store: memstore.New()}
	sched, err := scheduler.New(b, s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sched.Close(); _ = b.Close() })
	h, err := httpapi.New(sched)
	require.NoError(t, err)
	const body = `{"type":"a","payload":{"n":1},"delay":"1h"}`
	first := post(t, h, body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, first.code, "%s", first.body)
	s.down.Store(true)
	again := post(t, h, body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusServiceUnavailable, again.code, "%s", again.body)
	require.Equal(t, httpapi.CodeBackendUnavailable, again.errorCode(t))
	s.down.Store(false)
	again = post(t, h, body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, again.code, "%s", again.body)
	require.Equal(t, first.task(t).ID, again.task(t).ID)
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const body = `{"type":"a","payload":{"n":1},"delay":"1h"}`
	first := post(t, e.h, body, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusAccepted, first.code, "%s", first.body)
	id := first.task(t).ID
	require.Equal(t, "order-7", first.task(t).UniqueKey)

	// A replay, even with the structured-field quotes and reformatted JSON: 200 and the same task.
	for _, key := range []string{"order-7", `"order-7"`} {
		again := post(t, e.h, `{"payload": {"n": 1}, "type": "a", "delay": "1h"}`, "Idempotency-Key", key)
		require.Equal(t, http.StatusOK, again.code, "%s", again.body)
		require.Equal(t, id, again.task(t).ID)
		require.Equal(t, "/status/"+id, again.header.Get("Location"))
	}
	// The same key with another request: 422, naming the holder.
	other := post(t, e.h, `{"type":"a","payload":{"n":2}}`, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusUnprocessableEntity, other.code)
	require.Equal(t, httpapi.CodeIdempotencyKeyReused, other.errorCode(t))
	require.Contains(t, string(other.body), id)
	// The key in the body means the same key.
	dup := post(t, e.h, `{"type":"a","unique_key":"order-7"}`)
	require.Equal(t, http.StatusConflict, dup.code)
	require.Equal(t, httpapi.CodeDuplicateTask, dup.errorCode(t))
	require.Contains(t, string(dup.body), `"task_id":"`+id+`"`)

	// Once the task is finished the key is free again.
	require.NoError(t, e.sched.Cancel(context.Background(), id))
	next := post(t, e.h, body, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusAccepted, next.code)
	require.NotEqual(t, id, next.task(t).ID)

	counts, err := e.sched.Counts(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[scheduler.State]int64{scheduler.StateCanceled: 1, scheduler.StateScheduled: 1}, counts)
}

func TestUniqueKeyConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := post(t, e.h, `{"type":"a","unique_key":"k","delay":"1h"}`)
	require.Equal(t, http.StatusAccepted, first.code)
	dup := post(t, e.h, `{"type":"a","unique_key":"k"}`)
	require.Equal(t, http.StatusConflict, dup.code)
	require.Equal(t, httpapi.CodeDuplicateTask, dup.errorCode(t))
	require.Equal(t, first.task(t).ID, dup.taskID(t))
}

func TestSubmitWhenBackendDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.down.Store(true)
	res := post(t, e.h, `{"type":"a"}`)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.Equal(t, httpapi.CodeBackendUnavailable, res.errorCode(t))
	require.NotContains(t, string(res.body), "6379", "backend details stay in the log")

	// The broker down after the store write: the task ID is given.
	e.store.down.Store(false)
	require.NoError(t, e.broker.Close())
	res = post(t, e.h, `{"type":"a"}`)
	require.Equal(t, http.StatusServiceUnavailable, res.code)
	require.Equal(t, httpapi.CodeBackendUnavailable, res.errorCode(t))
	got := do(t, e.h, http.MethodGet, "/status/"+res.taskID(t), nil)
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, scheduler.StateCanceled, got.task(t).State)
}

func TestLocationWithoutRequestURI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A request built for a client, handed to the handler directly, has no
	// RequestURI: the Location is relative to the submit URL.
	req, err := http.NewRequest(http.MethodPost, "http://example.com/x/submit", strings.NewReader(`{"type":"a"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	http.StripPrefix("/x", e.h).ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code)
	loc := rec.Header().Get("Location")
	require.True(t, strings.HasPrefix(loc, "status/"), loc)
	u, err := req.URL.Parse(loc)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("http://example.com/x/%s", loc), u.String())
}
