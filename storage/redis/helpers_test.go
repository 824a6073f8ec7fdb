package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is one isolated store under test with direct access to its
// Redis.
type harness struct {
	s   *Store
	rdb *redis.Client
	mr  *miniredis.Miniredis // nil on a real server
	ns  string
}

// backends runs f against miniredis and, when testenv.RedisEnv is set, against the
// real server.
func backends(t *testing.T, f func(t *testing.T, h *harness)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		f(t, newMini(t))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, newReal(t))
	})
}

// servers runs f with the address of a fresh miniredis and, when envRedis
// is set, of the real server, for tests that build their own clients.
func servers(t *testing.T, f func(t *testing.T, addr string)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		f(t, miniredis.RunT(t).Addr())
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, realAddr(t))
	})
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

func newMini(t *testing.T, opts ...Option) *harness {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return newHarness(t, rdb, mr, opts...)
}

// realAddr returns the real server's address or skips the test.
func realAddr(t testing.TB) string {
	t.Helper()
	return testenv.Redis(t)
}

func newReal(t *testing.T, opts ...Option) *harness {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: realAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return newHarness(t, rdb, nil, opts...)
}

// newHarness builds a store with a unique prefix whose keys are deleted
// when the test ends.
func newHarness(t testing.TB, rdb *redis.Client, mr *miniredis.Miniredis, opts ...Option) *harness {
	t.Helper()
	prefix := randomPrefix()
	s, err := New(rdb, append([]Option{WithPrefix(prefix)}, opts...)...)
	require.NoError(t, err)
	h := &harness{s: s, rdb: rdb, mr: mr, ns: "{" + prefix + "}"}
	t.Cleanup(func() { deleteNamespace(t, rdb, h.ns) })
	return h
}

// deleteNamespace deletes every key of ns, found with SCAN MATCH.
func deleteNamespace(t testing.TB, rdb redis.UniversalClient, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := scanKeys(ctx, rdb, ns)
	if err != nil {
		t.Logf("cleanup of %s: %v", ns, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			t.Logf("cleanup of %s: %v", ns, err)
			return
		}
		keys = keys[n:]
	}
}

// scanKeys returns every key of namespace ns.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, ns string) ([]string, error) {
	pattern := strings.NewReplacer("{", `\{`, "}", `\}`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(ns) + ":*"
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// keys returns the keys of the harness' namespace, without operation
// markers (they expire by themselves).
func (h *harness) keys(t testing.TB) []string {
	t.Helper()
	all, err := scanKeys(context.Background(), h.rdb, h.ns)
	require.NoError(t, err)
	var out []string
	for _, k := range all {
		if !strings.HasPrefix(k, h.ns+":op:") {
			out = append(out, k)
		}
	}
	return out
}

// now is a fixed instant as stored and read back (UTC, no monotonic
// reading), so tasks compare equal after a round trip.
func now() time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
}

func newID(t testing.TB) string {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

func newTask(t testing.TB, mods ...func(*scheduler.Task)) *scheduler.Task {
	t.Helper()
	task := &scheduler.Task{
		ID:         newID(t),
		Type:       "email.send",
		Queue:      scheduler.DefaultQueue,
		Payload:    []byte(`{"to":"a@example.com"}`),
		Priority:   scheduler.PriorityDefault,
		State:      scheduler.StatePending,
		MaxRetries: scheduler.DefaultMaxRetries,
		CreatedAt:  now(),
	}
	for _, m := range mods {
		m(task)
	}
	return task
}

// create stores tasks and requires each to be stored.
func (h *harness) create(t testing.TB, tasks ...*scheduler.Task) {
	t.Helper()
	res, err := h.s.Create(context.Background(), tasks)
	require.NoError(t, err)
	require.Len(t, res, len(tasks))
	for i, e := range res {
		require.NoError(t, e, "task %d", i)
	}
}

func (h *harness) get(t testing.TB, id string) *scheduler.Task {
	t.Helper()
	task, err := h.s.Get(context.Background(), id)
	require.NoError(t, err)
	return task
}

// start starts a waiting task at its current attempt.
func (h *harness) start(t testing.TB, id string) *scheduler.Task {
	t.Helper()
	cur := h.get(t, id)
	task, err := h.s.Start(context.Background(), id, scheduler.StartParams{Attempt: cur.Attempt, WorkerID: "w1", Now: now()})
	require.NoError(t, err)
	return task
}

// finish starts a task and finishes its attempt in state st at at.
func (h *harness) finish(t testing.TB, id string, st scheduler.State, at time.Time) *scheduler.Task {
	t.Helper()
	task := h.start(t, id)
	task, err := h.s.Finish(context.Background(), id, scheduler.FinishParams{Attempt: task.Attempt, State: st, Now: at, RunAt: at})
	require.NoError(t, err)
	return task
}

// checkConsistent verifies that the namespace's indexes agree with its
// records: every record is in exactly the listing index of its state,
// queue and type; the finish log holds one entry of every terminal task
// plus the stale entries counted for retried tasks, and nothing else; the
// outbox holds only waiting tasks; every unique key belongs to an
// unfinished task that carries it; and no other key exists.
func (h *harness) checkConsistent(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	records := map[string]*scheduler.Task{}
	seen := map[string]int{}
	for _, k := range h.keys(t) {
		rest := strings.TrimPrefix(k, h.ns+":")
		switch {
		case strings.HasPrefix(rest, "t:"):
			id := strings.TrimPrefix(rest, "t:")
			records[id] = h.get(t, id)
		case strings.HasPrefix(rest, "i:"), strings.HasPrefix(rest, "u:"), strings.HasPrefix(rest, "w:"),
			strings.HasPrefix(rest, "wc:"), strings.HasPrefix(rest, "claim:"),
			rest == "c", rest == "o", rest == "d", rest == "r", rest == "ws":
		default:
			t.Fatalf("unexpected key %s", k)
		}
	}
	combos, err := h.rdb.SMembers(ctx, h.ns+":c").Result()
	require.NoError(t, err)
	for _, c := range combos {
		q, typ, ok := strings.Cut(c, ":")
		require.True(t, ok, c)
		for _, st := range scheduler.States {
			ids, err := h.rdb.ZRange(ctx, h.ns+":i:"+string(st)+":"+c, 0, -1).Result()
			require.NoError(t, err)
			for _, id := range ids {
				r, ok := records[id]
				require.True(t, ok, "index %s lists %s which has no record", st, id)
				require.Equal(t, st, r.State, "task %s indexed as %s", id, st)
				require.Equal(t, q, r.Queue, id)
				require.Equal(t, typ, r.Type, id)
				seen[id]++
			}
		}
	}
	for id := range records {
		require.Equal(t, 1, seen[id], "task %s in %d listing indexes", id, seen[id])
	}
	log, err := h.rdb.LRange(ctx, h.ns+":d", 0, -1).Result()
	require.NoError(t, err)
	entries := map[string]int{}
	for _, e := range log {
		at, id, ok := strings.Cut(e, ":")
		require.True(t, ok, "finish log entry %q", e)
		_, err := strconv.ParseInt(at, 10, 64)
		require.NoError(t, err, "finish log entry %q", e)
		_, ok = records[id]
		require.True(t, ok, "finish log lists %s which has no record", id)
		entries[id]++
	}
	staleCounts, err := h.rdb.HGetAll(ctx, h.ns+":r").Result()
	require.NoError(t, err)
	for id, r := range records {
		want := 0
		if r.State.Terminal() {
			want = 1
		}
		if c, ok := staleCounts[id]; ok {
			n, err := strconv.Atoi(c)
			require.NoError(t, err)
			require.Positive(t, n, "stale count of %s", id)
			want += n
		}
		require.Equal(t, want, entries[id], "task %s (%s): finish log entries", id, r.State)
	}
	for id := range staleCounts {
		_, ok := records[id]
		require.True(t, ok, "stale count for %s which has no record", id)
	}
	outbox, err := h.rdb.ZRange(ctx, h.ns+":o", 0, -1).Result()
	require.NoError(t, err)
	for _, id := range outbox {
		r, ok := records[id]
		require.True(t, ok, "outbox lists %s which has no record", id)
		require.True(t, r.State.Waiting(), "outbox lists %s in state %s", id, r.State)
	}
	for _, k := range h.keys(t) {
		if !strings.HasPrefix(k, h.ns+":u:") {
			continue
		}
		id, err := h.rdb.Get(ctx, k).Result()
		require.NoError(t, err)
		r, ok := records[id]
		require.True(t, ok, "unique key %s held by %s which has no record", k, id)
		require.False(t, r.State.Terminal(), "unique key %s held by finished task %s", k, id)
		require.Equal(t, k, h.ns+":u:"+stored(r.UniqueKey))
	}
}

// followClock makes the miniredis of h expire keys as real time passes
// (miniredis only moves its TTL clock when told), until the test ends.
func (h *harness) followClock(t *testing.T) {
	t.Helper()
	if h.mr == nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				h.mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// allScripts lists every script, for preloading.
var allScripts = []*redis.Script{
	createLua, transitionsScript, cancelScript, retryScript, purgeScript, heartbeatScript, publishedScript,
	removeWorkerScript, workersScript, claimLua, listScript, countsScript, outboxScript,
}
