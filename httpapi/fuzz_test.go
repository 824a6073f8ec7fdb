package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	memstore "github.com/dtsched/scheduler/storage/memory"

	"github.com/dtsched/scheduler"
)

// FuzzSubmit drives POST /submit with arbitrary bodies, content types and
// Idempotency-Keys. Whatever comes in, the answer is never a 5xx: it is a
// 202 or 200 with a task, or a 4xx with a JSON error. The seeds run with
// every `go test`; `go test -fuzz FuzzSubmit ./httpapi` explores further.
func FuzzSubmit(f *testing.F) {
	for _, seed := range []struct{ body, contentType, key string }{
		{`{"type":"a"}`, "application/json", ""},
		{`{"type":"email.send","payload":{"to":"ada@example.com"},"priority":7,"queue":"mail","max_retries":5,"timeout":"30s","delay":"10s","unique_key":"u1"}`, "application/json", ""},
		{`{"type":"a","run_at":"2030-01-02T15:04:05Z","timeout":1.5}`, "application/json; charset=utf-8", ""},
		{`{"type":"a","payload":"<script>\u2028"}`, "application/json", "idem-1"},
		{`{"type":"a","payload":[1,2,{"x":null}]}`, "application/json", `"quoted"`},
		{`{"type":"a","unique_key":"k"}`, "application/json", "k"},
		{`{"type":"a","priority":1e400}`, "application/json", ""},
		{`{"type":"a","timeout":-0.0000000001}`, "application/json", ""},
		{`{"type":"a","delay":"1e300h"}`, "application/json", ""},
		{`{"type":"a"}{}`, "application/json", ""},
		{`{"type":"a","payload":`, "application/json", ""},
		{"{\"type\":\"\xff\"}", "application/json", ""},
		{`[]`, "application/json", ""},
		{`null`, "application/json", ""},
		{``, "application/json", ""},
		{`{"type":"a"}`, "text/plain", ""},
		{`{"type":"a"}`, "", "\x00"},
		{`{"TYPE":"a","Priority":3}`, "application/json", ""},
		{`{"type":"a","type":"b"}`, "application/json", ""},
		{`{"type":"a","payload":1e999}`, "application/json", ""},
		{`{"type":"a","payload":"` + strings.Repeat("\\u0000", 100) + `"}`, "application/json", ""},
	} {
		f.Add([]byte(seed.body), seed.contentType, seed.key)
	}
	b := membroker.New()
	sched, err := scheduler.New(b, memstore.New())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		_ = sched.Close()
		_ = b.Close()
	})
	h, err := httpapi.New(sched, httpapi.WithMaxBodyBytes(64<<10), httpapi.WithBackendTimeout(5*time.Second))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType, key string) {
		req := httptest.NewRequest(http.MethodPost, "/submit", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", contentType)
		if key != "" {
			req.Header["Idempotency-Key"] = []string{key}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("status %d: answer is not JSON: %q", rec.Code, rec.Body)
		}
		switch rec.Code {
		case http.StatusAccepted, http.StatusOK:
			var task scheduler.Task
			if err := json.Unmarshal(rec.Body.Bytes(), &task); err != nil || scheduler.ValidateID(task.ID) != nil {
				t.Fatalf("status %d: answer is not a task: %q (%v)", rec.Code, rec.Body, err)
			}
			if rec.Header().Get("Location") == "" {
				t.Fatalf("status %d without Location", rec.Code)
			}
			// It can be read back, and canceled to keep the store small.
			got, err := sched.Status(context.Background(), task.ID)
			if err != nil || got.Type != task.Type {
				t.Fatalf("submitted task %s not stored as answered: %v", task.ID, err)
			}
			_ = sched.Cancel(context.Background(), task.ID)
		default:
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d: not a JSON error: %q", rec.Code, rec.Body)
			}
			if rec.Code < 400 {
				t.Fatalf("unexpected status %d: %q", rec.Code, rec.Body)
			}
		}
	})
}
