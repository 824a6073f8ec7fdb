package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
)

// lossyConn reads a reply from the server and throws it away, closing the
// connection, when armed: the server has applied the command but the client
// sees a broken connection, and go-redis sends the command again.
type lossyConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c *lossyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.armed.CompareAndSwap(true, false) {
		_ = c.Conn.Close()
		return 0, io.EOF
	}
	return n, err
}

// lossyClient returns a client whose next reply is lost whenever the
// returned flag is set, and the number of connections it dialed.
func lossyClient(t *testing.T, addr string) (*redis.Client, *atomic.Bool, *atomic.Int32) {
	armed, dials := new(atomic.Bool), new(atomic.Int32)
	var d net.Dialer
	rdb := redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &lossyConn{Conn: c, armed: armed}, nil
		},
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, armed, dials
}

// Every changing call, sent twice by go-redis because its first reply was
// lost, applies once and answers as the first execution did.
func TestRetriedCallAppliesOnce(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, addr string) {
		ctx := context.Background()
		rdb, armed, dials := lossyClient(t, addr)
		core, logs := observer.New(zapcore.DebugLevel)
		h := newHarness(t, rdb, nil, WithLogger(zap.New(core)))
		for _, sc := range allScripts {
			require.NoError(t, sc.Load(ctx, rdb).Err(), "a NOSCRIPT reply would be lost instead")
		}
		lose := func() {
			t.Helper()
			require.False(t, armed.Load(), "the previous call lost no reply")
			armed.Store(true)
		}
		base := dials.Load()

		// Create: a replay must not see its own tasks as duplicates.
		a := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "only-once" })
		b := newTask(t)
		lose()
		res, err := h.s.Create(ctx, []*scheduler.Task{a, b})
		require.NoError(t, err)
		require.Equal(t, []error{nil, nil}, res)
		require.Equal(t, base+1, dials.Load(), "the call was sent again on a new connection")

		// Start as a redelivery: the second execution, unfenced, would
		// take the task over from the first and bump the attempt twice.
		lose()
		got, err := h.s.Start(ctx, a.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w1", Now: now()})
		require.NoError(t, err)
		require.Equal(t, 1, got.Attempt)
		require.Equal(t, 1, h.get(t, a.ID).Attempt)

		// Finish: unfenced, the second execution would be refused as stale.
		lose()
		got, err = h.s.Finish(ctx, a.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateRetrying, Error: "e1", AddRetries: 2, RunAt: now(), Now: now()})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateRetrying, got.State)
		require.Equal(t, scheduler.DefaultMaxRetries+2, h.get(t, a.ID).MaxRetries, "retries were added once")

		h.start(t, a.ID)
		_, err = h.s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w1"}, time.Minute)
		require.NoError(t, err)
		lose()
		_, err = h.s.Cancel(ctx, a.ID, scheduler.CancelParams{Reason: "r", Now: now()})
		require.NoError(t, err, "unfenced, the second execution would find the task finished")

		// Heartbeat: unfenced, the second execution would return no
		// cancel request, and the worker would never learn of it.
		lose()
		canceled, err := h.s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w1"}, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{a.ID}, canceled)

		lose()
		got, err = h.s.Retry(ctx, a.ID, now())
		require.NoError(t, err)
		require.Equal(t, scheduler.StatePending, got.State)
		require.Equal(t, scheduler.DefaultMaxRetries+2+2, h.get(t, a.ID).MaxRetries, "the budget grew once")

		// Purge: unfenced, the second execution would delete more than
		// the limit while reporting fewer.
		for range 4 {
			task := newTask(t)
			h.create(t, task)
			h.finish(t, task.ID, scheduler.StateSucceeded, now())
		}
		lose()
		n, err := h.s.Purge(ctx, now().Add(time.Second), 2)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		counts, err := h.s.Counts(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(2), counts[scheduler.StateSucceeded])

		// Claim: unfenced, the winner would be told it lost.
		lose()
		ok, err := h.s.Claim(ctx, "tick", time.Minute)
		require.NoError(t, err)
		require.True(t, ok)

		require.Equal(t, base+8, dials.Load(), "each lost reply cost one reconnect")
		require.Equal(t, 7, logs.FilterMessage("retried call had already applied").Len())
		h.checkConsistent(t)
	}
	servers(t, run)
}

// clientIDs returns the IDs of the server's connections named name.
func clientIDs(ctx context.Context, admin *redis.Client, name string) ([]string, error) {
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		var id string
		named := false
		for _, f := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				named = true
			}
		}
		if named && id != "" {
			out = append(out, id)
		}
	}
	return out, sc.Err()
}

// Connections of the store are killed (CLIENT KILL ID, for the test's own
// named connections only) over and over while workers drive tasks through
// Create, Start (as a redelivery, the case a double apply would show) and
// Finish. Every call either applies once or fails; a failed call is
// followed by reading the task back and going on from where it is. In the
// end every task ran exactly one attempt and the indexes agree.
func TestClientKillMidStream(t *testing.T) {
	t.Parallel()
	addr := realAddr(t)
	ctx := context.Background()
	name := "sched-kill-" + randomPrefix()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ClientName: name, PoolSize: 8})
	t.Cleanup(func() { _ = rdb.Close() })
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = admin.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHarness(t, rdb, nil, WithLogger(zap.New(core)))
	require.NoError(t, h.s.Ping(ctx))

	const workers, perWorker = 8, 40
	stop := make(chan struct{})
	var kills atomic.Int64
	killerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				killerDone <- nil
				return
			default:
			}
			ids, err := clientIDs(ctx, admin, name)
			if err != nil {
				killerDone <- err
				return
			}
			for _, id := range ids {
				if admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err() == nil {
					kills.Add(1)
				}
			}
			time.Sleep(300 * time.Microsecond)
		}
	}()

	var failed atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs <- drive(ctx, h.s, fmt.Sprint("w", w), perWorker, &failed)
		})
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-killerDone)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d connections killed, %d calls failed, %d retried calls found already applied",
		kills.Load(), failed.Load(), logs.FilterMessage("retried call had already applied").Len())
	require.Positive(t, kills.Load())

	counts, err := h.s.Counts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[scheduler.State]int64{scheduler.StateSucceeded: workers * perWorker}, counts)
	page, err := h.s.List(ctx, scheduler.ListFilter{Limit: scheduler.MaxListLimit})
	require.NoError(t, err)
	for _, task := range page.Tasks {
		require.Equal(t, 1, task.Attempt, "task %s started once", task.ID)
	}
	h.checkConsistent(t)
}

// drive takes n new tasks to succeeded through calls that may fail with
// a connection error. After a failed call it reads the task back and
// continues from the state found. It reports a task whose attempt shows a
// start applied twice, and any fence error: with replays fenced by their
// token, a resent call is never refused by its own first execution.
func drive(ctx context.Context, s *Store, worker string, n int, failed *atomic.Int64) error {
	deadline := time.Now().Add(time.Minute)
	get := func(id string) (*scheduler.Task, error) {
		for {
			task, err := s.Get(ctx, id)
			if err == nil || errors.Is(err, scheduler.ErrTaskNotFound) || time.Now().After(deadline) {
				return task, err
			}
			failed.Add(1)
		}
	}
	fence := func(err error) error {
		for _, target := range []error{scheduler.ErrStaleAttempt, scheduler.ErrTaskFinished, scheduler.ErrDuplicateTask} {
			if errors.Is(err, target) {
				return err
			}
		}
		failed.Add(1)
		return nil
	}
	for range n {
		task := &scheduler.Task{ID: uuid.Must(uuid.NewV7()).String(), Type: "kill.test", Queue: "default",
			State: scheduler.StatePending, MaxRetries: 3, CreatedAt: now()}
		for {
			res, err := s.Create(ctx, []*scheduler.Task{task})
			if err == nil {
				if res[0] != nil {
					return fmt.Errorf("create %s: %w", task.ID, res[0])
				}
				break
			}
			if err := fence(err); err != nil {
				return err
			}
			if _, err := get(task.ID); err == nil {
				break // the failed call had applied
			}
		}
		for done := false; !done; {
			cur, err := get(task.ID)
			if err != nil {
				return err
			}
			if cur.Attempt > 1 {
				return fmt.Errorf("task %s: attempt %d: a start applied twice", cur.ID, cur.Attempt)
			}
			switch cur.State {
			case scheduler.StatePending:
				_, err = s.Start(ctx, cur.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: worker, Now: now()})
			case scheduler.StateRunning:
				_, err = s.Finish(ctx, cur.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: now()})
			case scheduler.StateSucceeded:
				done = true
			default:
				return fmt.Errorf("task %s: unexpected state %s", cur.ID, cur.State)
			}
			if err != nil {
				if err := fence(err); err != nil {
					return fmt.Errorf("task %s in state %s: %w", cur.ID, cur.State, err)
				}
			}
		}
	}
	return nil
}

// A batch of transitions whose reply is lost and which go-redis sends again
// answers each transition as its first execution did: the ones that applied
// with the task as it is now, the refused ones with the same refusal.
func TestRetriedTransitionBatch(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, addr string) {
		ctx := context.Background()
		rdb, armed, _ := lossyClient(t, addr)
		h := newHarness(t, rdb, nil)
		for _, sc := range allScripts {
			require.NoError(t, sc.Load(ctx, rdb).Err())
		}
		a, b, c := newTask(t), newTask(t), newTask(t)
		h.create(t, a)
		h.create(t, b)
		h.create(t, c)
		h.start(t, c.ID)
		ops := []transitionOp{
			{kind: "s", name: "start", id: a.ID, args: []any{0, "0", "w1", "2026-01-02T03:04:05Z", ""}},
			{kind: "s", name: "start", id: b.ID, args: []any{5, "0", "w1", "2026-01-02T03:04:05Z", ""}}, // stale
			{kind: "f", name: "finish", id: c.ID, args: []any{1, "succeeded", "", "", "", 0, "2026-01-02T03:04:05Z", "1767323045000000", "1767323045000000"}},
			{kind: "s", name: "start", id: a.ID, args: []any{0, "0", "w2", "2026-01-02T03:04:05Z", ""}}, // duplicate: stale
		}
		armed.Store(true)
		res, err := h.s.transitionBatch(ctx, ops)
		require.NoError(t, err)
		require.False(t, armed.Load(), "the reply was lost once")
		require.Len(t, res, 4)
		require.NoError(t, res[0].err)
		require.Equal(t, scheduler.StateRunning, res[0].t.State)
		require.Equal(t, 1, res[0].t.Attempt, "started once")
		require.Equal(t, "w1", res[0].t.WorkerID)
		require.ErrorIs(t, res[1].err, scheduler.ErrStaleAttempt)
		require.NoError(t, res[2].err)
		require.Equal(t, scheduler.StateSucceeded, res[2].t.State)
		require.ErrorIs(t, res[3].err, scheduler.ErrStaleAttempt)
		require.Equal(t, scheduler.StatePending, h.get(t, b.ID).State)
		h.checkConsistent(t)
	}
	servers(t, run)
}

// Concurrent starts and finishes share script calls and each gets its own
// fenced outcome.
func TestConcurrentTransitionsBatch(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		const n = 200
		tasks := make([]*scheduler.Task, n)
		for i := range tasks {
			tasks[i] = newTask(t)
		}
		res, err := h.s.Create(ctx, tasks)
		require.NoError(t, err)
		require.Equal(t, make([]error, n), res)
		var wg sync.WaitGroup
		var started, stale atomic.Int32
		for i := range 2 * n { // every task started twice: one wins
			wg.Go(func() {
				task := tasks[i%n]
				got, err := h.s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w", Now: now()})
				if errors.Is(err, scheduler.ErrStaleAttempt) || errors.Is(err, scheduler.ErrTaskFinished) {
					stale.Add(1) // the other start won
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				started.Add(1)
				_, err = h.s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: got.Attempt, State: scheduler.StateSucceeded, Now: now()})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, int32(n), started.Load())
		require.Equal(t, int32(n), stale.Load())
		for _, task := range tasks {
			got := h.get(t, task.ID)
			require.Equal(t, scheduler.StateSucceeded, got.State)
			require.Equal(t, 1, got.Attempt)
		}
		h.checkConsistent(t)
	})
}
