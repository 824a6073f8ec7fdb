// Package e2e is the fault-injection suite of the scheduler: it builds
// examples/distributed, starts several worker processes against real
// RabbitMQ and Redis servers, submits tasks, injects faults (killed,
// stopped and paused processes, cut connections, a paused Redis, a crash
// inside Submit, failing and panicking handlers) and checks the
// invariants of the design against the task store and against an
// execution log that the handlers append to.
//
// The tests run when SCHEDULER_TEST_REDIS_ADDR and SCHEDULER_TEST_AMQP_URL
// are set and skip otherwise. Every case uses its own namespace (Redis key
// prefix and RabbitMQ queue names), so cases run in parallel with each
// other and with other tests on the same servers; a case that pauses Redis
// runs its own redis-server. The results of a run are compared with the
// matrix in docs/RELIABILITY.md; go test ./internal/e2e -update rewrites
// it.
package e2e
