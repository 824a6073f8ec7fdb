package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/httpapi"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// Mount the API under /scheduler/ in an application's mux, submit a task
// and read it back; a bad request gets a JSON error.
func Example() {
	broker := membroker.New()
	defer broker.Close()
	sched, err := scheduler.New(broker, memstore.New())
	if err != nil {
		panic(err)
	}
	defer sched.Close()
	api, err := httpapi.New(sched)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scheduler/", http.StripPrefix("/scheduler", api))

	// In a real application: http.Server{Handler: mux, ReadHeaderTimeout: ...}.
	send := func(method, target, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}

	rec := send("POST", "/scheduler/submit", `{"type":"email.send","payload":{"to":"ada@example.com"},"priority":7}`)
	var task scheduler.Task
	if err := json.Unmarshal(rec.Body.Bytes(), &task); err != nil {
		panic(err)
	}
	fmt.Println(rec.Code, task.State, task.Priority, string(task.Payload))
	fmt.Println(rec.Header().Get("Location") == "/scheduler/status/"+task.ID)

	rec = send("GET", rec.Header().Get("Location"), "")
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))

	rec = send("POST", "/scheduler/submit", `{"type":"email.send","priority":12}`)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 202 pending 7 {"to":"ada@example.com"}
	// true
	// 200 application/json
	// 400 {"error":{"code":"invalid_field","message":"priority: must be 0 to 9, got 12","field":"priority"}}
}
