package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// Benchmarks run against the real server only (SCHEDULER_TEST_REDIS_ADDR);
// each uses its own prefix, deleted afterwards. Compare the store calls
// with the Raw* baselines of the same run: a plain go-redis SET and GET of
// the same record bytes.
//
//	SCHEDULER_TEST_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench . -benchtime=2000x -count=5 ./storage/redis/

func benchHarness(b *testing.B) *harness {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: realAddr(b)})
	b.Cleanup(func() { _ = rdb.Close() })
	h := newHarness(b, rdb, nil)
	require.NoError(b, h.s.Ping(context.Background()))
	for _, sc := range allScripts {
		require.NoError(b, sc.Load(context.Background(), rdb).Err())
	}
	require.NoError(b, emptyScript.Load(context.Background(), rdb).Err())
	return h
}

// smallTask is a task as the Scheduler submits it, with a small payload.
func smallTask() *scheduler.Task {
	now := time.Now()
	return &scheduler.Task{
		ID: uuid.Must(uuid.NewV7()).String(), Type: "email.send", Queue: scheduler.DefaultQueue,
		Payload: []byte(`{"to":"a@example.com"}`), Priority: scheduler.PriorityDefault, State: scheduler.StatePending,
		MaxRetries: scheduler.DefaultMaxRetries, RunAt: now, CreatedAt: now,
	}
}

func smallTasks(n int) []*scheduler.Task {
	out := make([]*scheduler.Task, n)
	for i := range out {
		out[i] = smallTask()
	}
	return out
}

// latencies collects per-call durations and reports their percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	pct := func(p float64) float64 {
		return float64(l.d[min(len(l.d)-1, int(p*float64(len(l.d))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// timed runs op b.N times, sequentially or from parallel goroutines, with
// op(i) given a distinct i in 0..b.N-1.
func timed(b *testing.B, parallel bool, op func(i int) error) {
	var l latencies
	var next struct {
		sync.Mutex
		i int
	}
	take := func() int {
		next.Lock()
		defer next.Unlock()
		next.i++
		return next.i - 1
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		d := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := op(i); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(t0))
		}
		b.StopTimer()
		l.add(d)
	} else {
		b.RunParallel(func(pb *testing.PB) {
			var d []time.Duration
			for pb.Next() {
				t0 := time.Now()
				if err := op(take()); err != nil {
					b.Error(err)
					return
				}
				d = append(d, time.Since(t0))
			}
			l.add(d)
		})
		b.StopTimer()
	}
	l.report(b)
}

// BenchmarkSetTask stores one new task per call (Store.Create of one task:
// record, listing index, combination registry and outbox, in one script).
func BenchmarkSetTask(b *testing.B) { benchCall(b, "SetTask") }

// BenchmarkGetTask reads and decodes one stored task per call.
func BenchmarkGetTask(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(mode(parallel), func(b *testing.B) {
			h := benchHarness(b)
			tasks := smallTasks(100)
			h.create(b, tasks...)
			ctx := context.Background()
			timed(b, parallel, func(i int) error {
				_, err := h.s.Get(ctx, tasks[i%len(tasks)].ID)
				return err
			})
		})
	}
}

// BenchmarkRawSet is the baseline of SetTask: a plain SET of the same
// record bytes under a key of the same length.
func BenchmarkRawSet(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(mode(parallel), func(b *testing.B) {
			h := benchHarness(b)
			tasks := smallTasks(b.N)
			keys, vals := make([]string, b.N), make([][]byte, b.N)
			for i, t := range tasks {
				keys[i] = h.ns + ":t:" + t.ID
				vals[i], _ = record(t, "")
			}
			ctx := context.Background()
			timed(b, parallel, func(i int) error {
				return h.rdb.Set(ctx, keys[i], vals[i], 0).Err()
			})
		})
	}
}

// BenchmarkRawGet is the baseline of GetTask: a plain GET of the same
// record bytes.
func BenchmarkRawGet(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(mode(parallel), func(b *testing.B) {
			h := benchHarness(b)
			tasks := smallTasks(100)
			h.create(b, tasks...)
			ctx := context.Background()
			timed(b, parallel, func(i int) error {
				return h.rdb.Get(ctx, h.ns+":t:"+tasks[i%len(tasks)].ID).Err()
			})
		})
	}
}

// BenchmarkStart moves one pending task to running per call.
func BenchmarkStart(b *testing.B) { benchCall(b, "Start") }

// BenchmarkFinish moves one running task to succeeded per call.
func BenchmarkFinish(b *testing.B) { benchCall(b, "Finish") }

// benchCall times the store call of storeCalls named name, one caller at
// a time and from parallel goroutines.
func benchCall(b *testing.B, name string) {
	i := slices.IndexFunc(storeCalls, func(c storeCall) bool { return c.name == name })
	require.GreaterOrEqual(b, i, 0, name)
	c := storeCalls[i]
	for _, parallel := range []bool{false, true} {
		b.Run(mode(parallel), func(b *testing.B) {
			h := benchHarness(b)
			tasks, _ := c.prepare(b, h)
			timed(b, parallel, func(i int) error { return c.store(h, tasks[i]) })
		})
	}
}

// BenchmarkMemoryPerTask reports the Redis memory (MEMORY USAGE, exact)
// taken by a finished small task: its record plus its index entries, with
// b.N tasks in the namespace. Replay markers, which expire after the
// replay window, are reported separately per call that wrote one.
func BenchmarkMemoryPerTask(b *testing.B) {
	h := benchHarness(b)
	ctx := context.Background()
	tasks := smallTasks(b.N)
	b.ResetTimer()
	createAll(b, h, tasks)
	for _, t := range tasks {
		_, err := h.s.Start(ctx, t.ID, scheduler.StartParams{WorkerID: "bench-host-1234-abcd", Now: time.Now()})
		require.NoError(b, err)
		_, err = h.s.Finish(ctx, t.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: time.Now()})
		require.NoError(b, err)
	}
	b.StopTimer()
	m := measureMemory(b, h)
	b.ReportMetric(float64(m.total)/float64(b.N), "B/task")
	b.ReportMetric(float64(m.records)/float64(b.N), "record-B/task")
	b.ReportMetric(float64(m.indexes)/float64(b.N), "index-B/task")
	b.ReportMetric(float64(m.markers)/float64(m.markerCount), "B/marker")
}

type memory struct {
	total, records, indexes, markers int64
	markerCount                      int
}

func measureMemory(b testing.TB, h *harness) memory {
	ctx := context.Background()
	keys, err := scanKeys(ctx, h.rdb, h.ns)
	require.NoError(b, err)
	var m memory
	for _, k := range keys {
		n, err := h.rdb.MemoryUsage(ctx, k, 0).Result()
		require.NoError(b, err)
		switch {
		case strings.HasPrefix(k, h.ns+":op:"):
			m.markers += n
			m.markerCount++
			continue
		case strings.HasPrefix(k, h.ns+":t:"):
			m.records += n
		default:
			m.indexes += n
		}
		m.total += n
	}
	return m
}

func createAll(b *testing.B, h *harness, tasks []*scheduler.Task) {
	for start := 0; start < len(tasks); start += 100 {
		h.create(b, tasks[start:min(start+100, len(tasks))]...)
	}
}

func mode(parallel bool) string {
	if parallel {
		return "parallel"
	}
	return "serial"
}

// BenchmarkEncodeRecord is the client-side work of SetTask besides the
// round trip: encoding the task and moving its payload last.
func BenchmarkEncodeRecord(b *testing.B) {
	t := smallTask()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := record(t, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRecord is the client-side work of GetTask besides the
// round trip.
func BenchmarkDecodeRecord(b *testing.B) {
	t := smallTask()
	js, err := record(t, "")
	require.NoError(b, err)
	s := &Store{ns: "{bench}"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.decode(t.ID, js); err != nil {
			b.Fatal(err)
		}
	}
}

// storeCall is a store call beside its raw baseline: a plain SET of the
// same record bytes for the writes, a GET for Get.
type storeCall struct {
	name  string
	cmd   string // the command the store's call runs (INFO commandstats)
	setup func(b *testing.B, h *harness, tasks []*scheduler.Task, js [][]byte)
	store func(h *harness, t *scheduler.Task) error
	raw   rawCall
}

// rawCall is a baseline: the command it runs and a call of it with the
// record bytes js of task t.
type rawCall struct {
	cmd  string
	call func(h *harness, t *scheduler.Task, js []byte) error
}

var (
	rawSet = rawCall{"set", func(h *harness, t *scheduler.Task, js []byte) error {
		return h.rdb.Set(context.Background(), h.ns+":raw:"+t.ID, js, 0).Err()
	}}
	rawGet = rawCall{"get", func(h *harness, t *scheduler.Task, _ []byte) error {
		return h.rdb.Get(context.Background(), h.ns+":raw:"+t.ID).Err()
	}}
)

// storeCalls are the calls the store's targets compare with a raw round
// trip. Each takes tasks of its own, prepared by setup.
var storeCalls = []storeCall{
	{"SetTask", "evalsha", nil, func(h *harness, t *scheduler.Task) error {
		res, err := h.s.Create(context.Background(), []*scheduler.Task{t})
		if err == nil && res[0] != nil {
			err = res[0]
		}
		return err
	}, rawSet},
	{"GetTask", "get", func(b *testing.B, h *harness, tasks []*scheduler.Task, js [][]byte) {
		createAll(b, h, tasks)
		setRaw(b, h, tasks, js)
	}, func(h *harness, t *scheduler.Task) error {
		_, err := h.s.Get(context.Background(), t.ID)
		return err
	}, rawGet},
	// The floor of any script: one that returns at once, called with the
	// keys and arguments of a Create of one task.
	{"EmptyScript", "evalsha", nil, func(h *harness, t *scheduler.Task) error {
		js, _ := record(t, "")
		combo := t.Queue + ":" + t.Type
		return emptyScript.Run(context.Background(), h.rdb,
			[]string{h.ns + ":c", h.ns + ":o", h.s.taskKey(t.ID), h.ns + ":i:pending:" + combo},
			h.ns, 1, t.ID, js, micros(t.RunAt), combo, "0").Err()
	}, rawSet},
	{"Start", "evalsha", func(b *testing.B, h *harness, tasks []*scheduler.Task, _ [][]byte) {
		createAll(b, h, tasks)
	}, startTask, rawSet},
	{"Finish", "evalsha", func(b *testing.B, h *harness, tasks []*scheduler.Task, _ [][]byte) {
		createAll(b, h, tasks)
		for _, t := range tasks {
			require.NoError(b, startTask(h, t))
		}
	}, func(h *harness, t *scheduler.Task) error {
		_, err := h.s.Finish(context.Background(), t.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: time.Now()})
		return err
	}, rawSet},
}

// emptyScript returns at once.
var emptyScript = redis.NewScript(`return {'ok', ''}`)

// setRaw stores each task's record bytes under its raw key, for the raw
// GETs to read.
func setRaw(b *testing.B, h *harness, tasks []*scheduler.Task, js [][]byte) {
	for i, t := range tasks {
		require.NoError(b, rawSet.call(h, t, js[i]))
	}
}

func startTask(h *harness, t *scheduler.Task) error {
	_, err := h.s.Start(context.Background(), t.ID, scheduler.StartParams{WorkerID: "bench-host-1234-abcd", Now: time.Now()})
	return err
}

// prepare returns b.N tasks for c, ready for its store call, and their
// record bytes for its raw call.
func (c storeCall) prepare(b *testing.B, h *harness) ([]*scheduler.Task, [][]byte) {
	tasks := smallTasks(b.N)
	js := make([][]byte, b.N)
	for i, t := range tasks {
		js[i], _ = record(t, "")
	}
	if c.setup != nil {
		c.setup(b, h, tasks, js)
	}
	return tasks, js
}

// BenchmarkVsRaw interleaves each store call with its raw baseline in
// every iteration, so both see the same load on a shared machine, and
// reports the ratio of their median and mean latencies.
func BenchmarkVsRaw(b *testing.B) {
	for _, p := range storeCalls {
		b.Run(p.name, func(b *testing.B) {
			h := benchHarness(b)
			tasks, js := p.prepare(b, h)
			ds, dr := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := p.store(h, tasks[i]); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := p.raw.call(h, tasks[i], js[i]); err != nil {
					b.Fatal(err)
				}
				ds, dr = append(ds, t1.Sub(t0)), append(dr, time.Since(t1))
			}
			b.StopTimer()
			mean := func(d []time.Duration) float64 {
				var sum time.Duration
				for _, x := range d {
					sum += x
				}
				return float64(sum.Nanoseconds()) / float64(len(d)) / 1e3
			}
			med := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2].Nanoseconds()) / 1e3
			}
			ms, mr := mean(ds), mean(dr)
			ps, pr := med(ds), med(dr)
			b.ReportMetric(ps, "p50-µs")
			b.ReportMetric(pr, "raw-p50-µs")
			b.ReportMetric(ps/pr, "x-raw-p50")
			b.ReportMetric(ms/mr, "x-raw-mean")
		})
	}
}

// BenchmarkServerTime reports the Redis server's own time per call
// (server-µs/call, from INFO commandstats: the usec of EVALSHA over its
// calls for the store's scripts, of SET or GET for the raw baselines) and
// the round trip the client saw (p50-µs), with the calls back to back
// (idle=0s) and with the server idle for a millisecond before each call
// (idle=1ms), as between the tasks of a steady low rate. The counters are
// the server's: run it against a Redis of its own, as calls of other
// clients are counted too.
func BenchmarkServerTime(b *testing.B) {
	type op struct {
		name, cmd string
		prepare   func(b *testing.B, h *harness) func(i int) error
	}
	var ops []op
	for _, r := range []struct {
		name string
		c    rawCall
	}{{"RawSet", rawSet}, {"RawGet", rawGet}} {
		ops = append(ops, op{r.name, r.c.cmd, func(b *testing.B, h *harness) func(int) error {
			tasks, js := storeCall{}.prepare(b, h)
			if r.c.cmd == "get" {
				setRaw(b, h, tasks, js)
			}
			return func(i int) error { return r.c.call(h, tasks[i], js[i]) }
		}})
	}
	for _, c := range storeCalls {
		ops = append(ops, op{c.name, c.cmd, func(b *testing.B, h *harness) func(int) error {
			tasks, _ := c.prepare(b, h)
			return func(i int) error { return c.store(h, tasks[i]) }
		}})
	}
	for _, idle := range []time.Duration{0, time.Millisecond} {
		for _, o := range ops {
			b.Run(fmt.Sprintf("idle=%v/%s", idle, o.name), func(b *testing.B) {
				h := benchHarness(b)
				call := o.prepare(b, h)
				before := commandStats(b, h.rdb, o.cmd)
				d := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if idle > 0 {
						b.StopTimer()
						time.Sleep(idle)
						b.StartTimer()
					}
					t0 := time.Now()
					if err := call(i); err != nil {
						b.Fatal(err)
					}
					d = append(d, time.Since(t0))
				}
				b.StopTimer()
				after := commandStats(b, h.rdb, o.cmd)
				b.ReportMetric(float64(after[1]-before[1])/float64(max(after[0]-before[0], 1)), "server-µs/call")
				slices.Sort(d)
				b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
			})
		}
	}
}

// commandStats returns the calls and usec INFO commandstats reports for
// cmd.
func commandStats(b *testing.B, rdb *redis.Client, cmd string) [2]int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(b, err)
	var calls, usec int64
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":"); ok {
			_, err := fmt.Sscanf(rest, "calls=%d,usec=%d,", &calls, &usec)
			require.NoError(b, err)
		}
	}
	return [2]int64{calls, usec}
}
