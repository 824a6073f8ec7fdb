// Package httpapi serves a Scheduler over HTTP: submit tasks, read their
// status, list, cancel and retry them, see the workers, check health and
// scrape metrics.
//
// # Mounting
//
// New returns an http.Handler; it never listens by itself. Mount it in the
// application's own server, under any prefix:
//
//	api, err := httpapi.New(sched,
//		httpapi.WithGatherer(reg),             // GET /metrics; omitted: not routed
//		httpapi.WithBearerToken(os.Getenv("SCHEDULER_TOKEN")),
//		httpapi.WithLogger(logger))
//	mux := http.NewServeMux()
//	mux.Handle("/scheduler/", http.StripPrefix("/scheduler", api))
//	srv := &http.Server{
//		Addr:              "127.0.0.1:8080",
//		Handler:           mux,
//		ReadHeaderTimeout: 5 * time.Second,  // slow clients are the server's job
//		ReadTimeout:       30 * time.Second,
//		WriteTimeout:      30 * time.Second,
//		IdleTimeout:       2 * time.Minute,
//	}
//
// Routes are Go 1.22 ServeMux patterns, relative to the mount point:
//
//	POST /submit               202 + Location + the task; 200 for an Idempotency-Key replay
//	GET  /status/{id}          200 + the task (GET /tasks/{id} too)
//	GET  /tasks                200 {"tasks":[...],"next_cursor":"..."}; ?state= &type= &queue= &limit=1..1000 &cursor=
//	POST /tasks/{id}/cancel    200 + the task, now canceled
//	POST /tasks/{id}/retry     200 + the task, pending again
//	GET  /workers              200 {"workers":[...]}
//	GET  /schedules            200 {"schedules":[...]}
//	GET  /healthz              200 {"status":"ok",...} or 503 naming the backend that is down
//	GET  /metrics              Prometheus text format, only with WithGatherer
//
// # Submitting
//
// The body of POST /submit is one JSON object, Content-Type
// application/json:
//
//	{
//	  "type": "email.send",              // required
//	  "payload": {"to": "ada@example.com"}, // any JSON value
//	  "priority": 7,                     // 0..9, default 5
//	  "queue": "mail",                   // default "default"
//	  "max_retries": 5,                  // 0..1000, default 3
//	  "timeout": "30s",                  // per attempt: Go duration or seconds (30)
//	  "delay": "10s",                    // or "run_at": "2030-01-02T15:04:05Z"
//	  "unique_key": "welcome:42"         // one unfinished task per key
//	}
//
// The payload is stored as its compact JSON text, with <, >, & escaped as
// \u003c, \u003e, \u0026 (the same JSON value) so that it reads back as JSON.
//
// An Idempotency-Key header acts as the unique key, for clients that retry
// a request whose answer they lost. Repeating a submission with the same
// key while its task is unfinished answers 200 with that task (not 202: no
// new task); the same key with a different request (type, payload, queue,
// priority or timeout) answers 422. A unique_key in the body that is held
// answers 409 with the holder's ID in "task_id". Once a task has finished
// its key is free again.
//
// # Errors
//
// Every error is JSON, {"error":{"code":"...","message":"..."}}, with
// "field" naming the request member at fault and "task_id" the task
// concerned where that applies. The codes are the Code constants. Client
// mistakes get 4xx and change nothing:
//
//	400  malformed JSON, unknown member, wrong type, missing type, value out
//	     of range (the field is named), malformed task ID (checked before any
//	     backend is asked), unknown query parameter, unclean path
//	401  missing or wrong bearer token (WithBearerToken), with WWW-Authenticate
//	404  unknown route or task
//	405  wrong method, with Allow
//	409  duplicate unique key, task already finished, task not retryable
//	413  body over the limit (WithMaxBodyBytes, 1 MiB), refused unread
//	415  Content-Type not application/json
//	422  Idempotency-Key reused for a different request
//	503  a backend did not answer (WithBackendTimeout), or the Scheduler is closed
//
// A panic in a route, a bug, is logged with its stack and answered 500.
package httpapi
