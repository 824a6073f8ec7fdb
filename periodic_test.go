package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the DST tests must not depend on the machine's zoneinfo

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/internal/clock"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// cluster is a set of Schedulers ("nodes") sharing one store, one broker
// and one fake clock.
type cluster struct {
	clk    *clock.Fake
	store  scheduler.Store
	mem    *memstore.Store
	broker scheduler.Broker
	mu     sync.Mutex
	nodes  []*node
}

// node is one Scheduler of a cluster and its periodic loop.
type node struct {
	c     *cluster
	sched *scheduler.Scheduler
	rec   *tickRecorder
	stop  context.CancelFunc
	done  chan error // receives RunPeriodic's result; nil while not running
}

func newCluster(t *testing.T, start time.Time) *cluster {
	t.Helper()
	b, s := membroker.New(), memstore.New()
	t.Cleanup(func() { _ = b.Close() })
	return &cluster{clk: clock.NewFake(start), store: s, mem: s, broker: b}
}

// startNode adds a node, registers defs on it, starts its loop and waits
// until every loop is idle.
func (c *cluster) startNode(t *testing.T, defs ...scheduler.Periodic) *node {
	t.Helper()
	n := c.addNode(t)
	for _, p := range defs {
		n.register(t, p)
	}
	n.start(t)
	c.settle(t)
	return n
}

// addNode adds a Scheduler on the cluster's backends and clock.
func (c *cluster) addNode(t *testing.T, opts ...scheduler.Option) *node {
	t.Helper()
	rec := &tickRecorder{}
	opts = append([]scheduler.Option{scheduler.WithObserver(rec), scheduler.WithRetryPolicy(fastRetry)}, opts...)
	sched, err := scheduler.New(c.broker, c.store, opts...)
	require.NoError(t, err)
	scheduler.SetClock(sched, c.clk)
	n := &node{c: c, sched: sched, rec: rec}
	t.Cleanup(func() {
		n.halt(t)
		require.NoError(t, sched.Close())
	})
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

func (n *node) register(t *testing.T, p scheduler.Periodic) {
	t.Helper()
	require.NoError(t, n.sched.RegisterPeriodic(p))
}

// start runs the node's periodic loop until halt or the end of the test.
func (n *node) start(t *testing.T) {
	t.Helper()
	require.Nil(t, n.done, "already started")
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.sched.RunPeriodic(ctx) }()
}

// halt stops the node's loop, as if its process stopped.
func (n *node) halt(t *testing.T) {
	t.Helper()
	if n.done == nil {
		return
	}
	n.stop()
	select {
	case err := <-n.done:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("RunPeriodic did not return")
	}
	n.done = nil
}

func (c *cluster) running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, n := range c.nodes {
		if n.done != nil {
			k++
		}
	}
	return k
}

// settle waits until every running loop is idle, waiting on its timer.
func (c *cluster) settle(t *testing.T) {
	t.Helper()
	want := c.running()
	require.Eventually(t, func() bool { return c.clk.Timers() == want }, wait, time.Millisecond,
		"%d loops never all waited on the clock", want)
}

// step moves the clock to the next wake-up of any loop and settles.
func (c *cluster) step(t *testing.T) time.Time {
	t.Helper()
	next, ok := c.clk.Next()
	require.True(t, ok, "no loop is waiting on the clock")
	c.clk.Set(next)
	c.settle(t)
	return next
}

// stepUntil steps until the clock reaches end.
func (c *cluster) stepUntil(t *testing.T, end time.Time) {
	t.Helper()
	for {
		next, ok := c.clk.Next()
		if !ok || next.After(end) {
			c.clk.Set(end)
			c.settle(t)
			return
		}
		c.step(t)
	}
}

// setClock jumps the clock to at (as after a pause) and settles.
func (c *cluster) setClock(t *testing.T, at time.Time) {
	t.Helper()
	c.clk.Set(at)
	c.settle(t)
}

// tasks returns every stored task, oldest tick first.
func (c *cluster) tasks(t *testing.T) []*scheduler.Task {
	t.Helper()
	var out []*scheduler.Task
	f := scheduler.ListFilter{Limit: scheduler.MaxListLimit}
	for {
		page, err := c.store.List(context.Background(), f)
		require.NoError(t, err)
		out = append(out, page.Tasks...)
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	slices.SortFunc(out, func(a, b *scheduler.Task) int {
		if c := a.Tick.Compare(b.Tick); c != 0 {
			return c
		}
		return compareStrings(a.Schedule, b.Schedule)
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ticksOf returns the ticks of the stored tasks of schedule, in order.
func (c *cluster) ticksOf(t *testing.T, schedule string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, task := range c.tasks(t) {
		if task.Schedule == schedule {
			out = append(out, task.Tick)
		}
	}
	return out
}

// tickRecorder is an Observer and TickObserver keeping every event.
type tickRecorder struct {
	mu    sync.Mutex
	ticks []scheduler.TickEvent
	tasks []scheduler.Event
}

func (r *tickRecorder) ObserveTick(e scheduler.TickEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ticks = append(r.ticks, e)
}

func (r *tickRecorder) Observe(e scheduler.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks = append(r.tasks, e)
}

func (r *tickRecorder) events(o scheduler.TickOutcome) []scheduler.TickEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []scheduler.TickEvent
	for _, e := range r.ticks {
		if e.Outcome == o {
			out = append(out, e)
		}
	}
	return out
}

func requireTimes(t *testing.T, want, got []time.Time) {
	t.Helper()
	require.Len(t, got, len(want), "want %v\ngot  %v", want, got)
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "tick %d: want %s, got %s\nall: %v", i, want[i], got[i], got)
	}
}

func utc(h, m, s int) time.Time { return time.Date(2026, 3, 14, h, m, s, 0, time.UTC) }

func TestPeriodicOncePerTickAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, nodes := range []int{2, 20} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, utc(10, 0, 5))
			for range nodes {
				n := c.addNode(t)
				n.register(t, scheduler.Periodic{Name: "every-10s", Every: 10 * time.Second, Type: "ping", Payload: []byte(`{"n":1}`),
					Options: []scheduler.SubmitOption{scheduler.WithQueue("periodic"), scheduler.WithPriority(scheduler.PriorityHigh)}})
				n.register(t, scheduler.Periodic{Name: "minutely", Spec: "* * * * *", Type: "report",
					Options: []scheduler.SubmitOption{scheduler.WithQueue("periodic"), scheduler.WithMaxRetries(1), scheduler.WithTimeout(time.Minute)}})
			}
			for _, n := range c.nodes {
				n.start(t)
			}
			c.settle(t) // the 10:00:00 ticks are within the catch-up window: submitted at start
			c.stepUntil(t, utc(10, 3, 0))

			var want10s, wantMin []time.Time
			for s := 0; s <= 180; s += 10 {
				want10s = append(want10s, utc(10, 0, 0).Add(time.Duration(s)*time.Second))
			}
			for m := 0; m <= 3; m++ {
				wantMin = append(wantMin, utc(10, m, 0))
			}
			requireTimes(t, want10s, c.ticksOf(t, "every-10s"))
			requireTimes(t, wantMin, c.ticksOf(t, "minutely"))

			for _, task := range c.tasks(t) {
				require.Equal(t, scheduler.TickID(task.Schedule, task.Tick), task.ID, "the ID is derived from the schedule and the tick")
				require.Equal(t, time.UTC, task.Tick.Location())
				require.Equal(t, "periodic", task.Queue)
				require.Equal(t, scheduler.StatePending, task.State)
				if task.Schedule == "every-10s" {
					require.Equal(t, "ping", task.Type)
					require.Equal(t, `{"n":1}`, string(task.Payload))
					require.Equal(t, scheduler.PriorityHigh, task.Priority)
				} else {
					require.Equal(t, "report", task.Type)
					require.Equal(t, 1, task.MaxRetries)
					require.Equal(t, time.Minute, task.Timeout)
				}
			}
			depth, err := c.broker.Depth(context.Background(), "periodic")
			require.NoError(t, err)
			require.Equal(t, len(want10s)+len(wantMin), depth, "one message per tick: only the node that stored a tick publishes it")

			// Every node reached every tick: exactly one fired it.
			fired := map[string]int{}
			taken := map[string]int{}
			for _, n := range c.nodes {
				for _, e := range n.rec.events(scheduler.TickFired) {
					require.NoError(t, e.Err)
					fired[e.Schedule+e.Tick.String()]++
				}
				for _, e := range n.rec.events(scheduler.TickTaken) {
					taken[e.Schedule+e.Tick.String()]++
				}
				require.Empty(t, n.rec.events(scheduler.TickSkipped))
				require.Empty(t, n.rec.events(scheduler.TickFailed))
			}
			require.Len(t, fired, len(want10s)+len(wantMin))
			for k, v := range fired {
				require.Equal(t, 1, v, k)
				require.Equal(t, nodes-1, taken[k], k)
			}
			submitted := 0
			for _, n := range c.nodes {
				n.rec.mu.Lock()
				for _, e := range n.rec.tasks {
					require.Equal(t, scheduler.EventSubmitted, e.Kind)
					require.NotEmpty(t, e.Task.Schedule)
					submitted++
				}
				n.rec.mu.Unlock()
			}
			require.Equal(t, len(want10s)+len(wantMin), submitted, "the node that submits a tick emits EventSubmitted")
			for _, n := range c.nodes {
				for _, info := range n.sched.Schedules() {
					require.True(t, info.Last.Equal(utc(10, 3, 0)), "%s: every node knows the last tick: %s", info.Name, info.Last)
				}
			}
		})
	}
}

func TestPeriodicSkipsTicksMissedWhileNoNodeRan(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 2, 0))
	def := scheduler.Periodic{Name: "five", Spec: "*/5 * * * *", Type: "job"} // default catch-up: one minute
	a := c.startNode(t, def)
	require.Empty(t, c.tasks(t), "10:00 is two minutes old at start: skipped")
	c.step(t)
	requireTimes(t, []time.Time{utc(10, 5, 0)}, c.ticksOf(t, "five"))

	// The only node stops; a new process starts 26 minutes later.
	a.halt(t)
	c.clk.Set(utc(10, 31, 30))
	b := c.startNode(t, def)
	requireTimes(t, []time.Time{utc(10, 5, 0)}, c.ticksOf(t, "five")) // 10:10 to 10:30 are skipped
	c.step(t)
	requireTimes(t, []time.Time{utc(10, 5, 0), utc(10, 35, 0)}, c.ticksOf(t, "five"))

	// A restart just after a tick (a rolling deploy) does not lose it.
	b.halt(t)
	c.clk.Set(utc(10, 40, 40))
	c.startNode(t, def)
	requireTimes(t, []time.Time{utc(10, 5, 0), utc(10, 35, 0), utc(10, 40, 0)}, c.ticksOf(t, "five"))
}

func TestPeriodicRunsTheLatestMissedTickOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 2, 0))
	def := scheduler.Periodic{Name: "five", Spec: "*/5 * * * *", Type: "job", CatchUp: time.Hour}
	a := c.startNode(t, def)
	requireTimes(t, []time.Time{utc(10, 0, 0)}, c.ticksOf(t, "five"))

	a.halt(t)
	c.clk.Set(utc(10, 31, 30))
	b := c.startNode(t, def)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 30, 0)}, c.ticksOf(t, "five")) // not 10:05 to 10:25: never a burst
	require.Len(t, b.rec.events(scheduler.TickFired), 1)

	// Another node starting now (or b restarting) finds the tick taken.
	e := c.startNode(t, def)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 30, 0)}, c.ticksOf(t, "five"))
	taken := e.rec.events(scheduler.TickTaken)
	require.Len(t, taken, 1)
	require.True(t, taken[0].Tick.Equal(utc(10, 30, 0)))
	require.Equal(t, scheduler.TickID("five", utc(10, 30, 0)), taken[0].TaskID)
}

func TestPeriodicLoopThatFallsBehind(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 2, 0))
	n := c.startNode(t, scheduler.Periodic{Name: "five", Spec: "*/5 * * * *", Type: "job"})

	// The process is paused from 10:02 to 11:00:30: only 11:00 runs.
	c.setClock(t, utc(11, 0, 30))
	requireTimes(t, []time.Time{utc(11, 0, 0)}, c.ticksOf(t, "five"))
	skipped := n.rec.events(scheduler.TickSkipped)
	require.Len(t, skipped, 1)
	require.Equal(t, 11, skipped[0].Count, "10:05 to 10:55")
	require.True(t, skipped[0].Tick.Equal(utc(10, 5, 0)), "the first tick skipped")

	// Paused again past the catch-up window of the latest tick: none runs.
	c.setClock(t, utc(12, 3, 0))
	requireTimes(t, []time.Time{utc(11, 0, 0)}, c.ticksOf(t, "five"))
	skipped = n.rec.events(scheduler.TickSkipped)
	require.Len(t, skipped, 2)
	require.Equal(t, 12, skipped[1].Count, "11:05 to 12:00")

	c.step(t)
	requireTimes(t, []time.Time{utc(11, 0, 0), utc(12, 5, 0)}, c.ticksOf(t, "five"))
}

func TestPeriodicDaylightSavingInNewYork(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	est, edt := time.FixedZone("EST", -5*3600), time.FixedZone("EDT", -4*3600)
	at := func(zone *time.Location, mo time.Month, d, h, mi int) time.Time {
		return time.Date(2026, mo, d, h, mi, 0, 0, zone)
	}

	c := newCluster(t, at(ny, 3, 6, 12, 0))
	for range 2 {
		n := c.addNode(t)
		n.register(t, scheduler.Periodic{Name: "at-0230", Spec: "30 2 * * *", Location: ny, Type: "job"})
		n.register(t, scheduler.Periodic{Name: "at-0130", Spec: "CRON_TZ=America/New_York 30 1 * * *", Type: "job"})
		n.register(t, scheduler.Periodic{Name: "hourly", Every: time.Hour, Type: "job"})
		n.start(t)
	}
	c.settle(t)
	c.stepUntil(t, at(ny, 3, 10, 0, 0)) // spring forward: 2026-03-08 02:00 EST -> 03:00 EDT
	c.setClock(t, at(ny, 10, 30, 12, 0))
	c.stepUntil(t, at(ny, 11, 3, 0, 0)) // fall back: 2026-11-01 02:00 EDT -> 01:00 EST

	requireTimes(t, []time.Time{
		at(est, 3, 7, 2, 30), at(edt, 3, 8, 3, 0), at(edt, 3, 9, 2, 30), // 02:30 did not exist on the 8th: 03:00
		at(edt, 10, 31, 2, 30), at(est, 11, 1, 2, 30), at(est, 11, 2, 2, 30),
	}, c.ticksOf(t, "at-0230"))
	requireTimes(t, []time.Time{
		at(est, 3, 7, 1, 30), at(est, 3, 8, 1, 30), at(edt, 3, 9, 1, 30),
		at(edt, 10, 31, 1, 30), at(edt, 11, 1, 1, 30), at(est, 11, 2, 1, 30), // 01:30 happened twice on Nov 1: once
	}, c.ticksOf(t, "at-0130"))

	// An interval ignores the zone: every hour of real time.
	hours := c.ticksOf(t, "hourly")
	legs := at(ny, 3, 10, 0, 0).Sub(at(ny, 3, 6, 12, 0)) + at(ny, 11, 3, 0, 0).Sub(at(ny, 10, 30, 12, 0))
	require.Len(t, hours, int(legs/time.Hour)+2, "each leg from its first full hour to its last, both included")
	for i := 1; i < len(hours); i++ {
		if hours[i].Month() == hours[i-1].Month() {
			require.Equal(t, time.Hour, hours[i].Sub(hours[i-1]))
		}
	}
	info := c.nodes[0].sched.Schedules()[1]
	require.Equal(t, "at-0230", info.Name)
	require.Equal(t, "America/New_York", info.TimeZone)
	require.Equal(t, ny, info.Next.Location(), "listed in the schedule's zone")
	require.True(t, info.Next.Equal(at(est, 11, 3, 2, 30)))
}

func TestRegisterPeriodicRejectsInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, scheduler.WithRetention(24*time.Hour))
	good := scheduler.Periodic{Name: "ok", Spec: "@hourly", Type: "job"}
	cases := []struct {
		name   string
		mutate func(*scheduler.Periodic)
		field  string
	}{
		{"bad cron", func(p *scheduler.Periodic) { p.Spec = "61 * * * *" }, "spec"},
		{"too few fields", func(p *scheduler.Periodic) { p.Spec = "* * *" }, "spec"},
		{"unknown descriptor", func(p *scheduler.Periodic) { p.Spec = "@sometimes" }, "spec"},
		{"never fires", func(p *scheduler.Periodic) { p.Spec = "0 0 31 4 *" }, "spec"},
		{"unknown zone", func(p *scheduler.Periodic) { p.Spec = "CRON_TZ=Nowhere/Land 0 9 * * *" }, "spec"},
		{"no spec", func(p *scheduler.Periodic) { p.Spec = "" }, "spec"},
		{"spec and every", func(p *scheduler.Periodic) { p.Every = time.Minute }, "spec"},
		{"sub-second interval", func(p *scheduler.Periodic) { p.Spec, p.Every = "", time.Millisecond }, "every"},
		{"local zone", func(p *scheduler.Periodic) { p.Location = time.Local }, "location"},
		{"zone twice", func(p *scheduler.Periodic) {
			p.Spec, p.Location = "CRON_TZ=Europe/Berlin 0 9 * * *", time.UTC
		}, "location"},
		{"empty name", func(p *scheduler.Periodic) { p.Name = "" }, "name"},
		{"bad name", func(p *scheduler.Periodic) { p.Name = "a/b" }, "name"},
		{"tiny catch-up", func(p *scheduler.Periodic) { p.CatchUp = time.Millisecond }, "catch_up"},
		{"catch-up beyond retention", func(p *scheduler.Periodic) { p.CatchUp = 24 * time.Hour }, "catch_up"},
		{"bad type", func(p *scheduler.Periodic) { p.Type = "a b" }, "type"},
		{"bad priority", func(p *scheduler.Periodic) { p.Options = []scheduler.SubmitOption{scheduler.WithPriority(42)} }, "priority"},
		{"bad queue", func(p *scheduler.Periodic) { p.Options = []scheduler.SubmitOption{scheduler.WithQueue("../x")} }, "queue"},
		{"unique key", func(p *scheduler.Periodic) { p.Options = []scheduler.SubmitOption{scheduler.WithUniqueKey("k")} }, "options"},
		{"delay", func(p *scheduler.Periodic) { p.Options = []scheduler.SubmitOption{scheduler.WithDelay(time.Second)} }, "options"},
		{"nil option", func(p *scheduler.Periodic) { p.Options = []scheduler.SubmitOption{nil} }, "options"},
		{"payload too big", func(p *scheduler.Periodic) { p.Payload = make([]byte, scheduler.DefaultMaxPayload+1) }, "payload"},
	}
	for _, tc := range cases {
		p := good
		p.Name = "n-" + fmt.Sprint(len(tc.name))
		tc.mutate(&p)
		err := e.sched.RegisterPeriodic(p)
		require.ErrorIs(t, err, scheduler.ErrInvalidSchedule, tc.name)
		var se *scheduler.ScheduleError
		require.ErrorAs(t, err, &se, tc.name)
		require.Equal(t, tc.field, se.Field, "%s: %v", tc.name, err)
		require.Equal(t, p.Name, se.Name, tc.name)
		require.Contains(t, err.Error(), tc.field, tc.name)
	}
	err := e.sched.RegisterPeriodic(scheduler.Periodic{Name: "x", Spec: "@daily", Type: "job", Options: []scheduler.SubmitOption{scheduler.WithPriority(42)}})
	require.ErrorIs(t, err, scheduler.ErrInvalidTask, "a bad task field is also an ErrInvalidTask")
	require.Empty(t, e.sched.Schedules(), "nothing registered")

	require.NoError(t, e.sched.RegisterPeriodic(good))
	err = e.sched.RegisterPeriodic(good)
	require.ErrorIs(t, err, scheduler.ErrInvalidSchedule)
	require.ErrorContains(t, err, "already registered")
	require.Len(t, e.sched.Schedules(), 1)

	require.NoError(t, e.sched.Close())
	require.ErrorIs(t, e.sched.RegisterPeriodic(scheduler.Periodic{Name: "late", Spec: "@daily", Type: "job"}), scheduler.ErrClosed)
}

func TestPeriodicRegisterAndUnregisterWhileRunning(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 0, 5))
	n := c.startNode(t, scheduler.Periodic{Name: "a", Every: 10 * time.Second, Type: "job"})
	c.step(t)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 0, 10)}, c.ticksOf(t, "a"))

	// Registered while the loop waits: taken up at once, and its latest
	// tick (within the catch-up window) is submitted.
	rounds := scheduler.PeriodicRounds(n.sched)
	n.register(t, scheduler.Periodic{Name: "b", Every: 10 * time.Second, Type: "job"})
	require.Eventually(t, func() bool { return scheduler.PeriodicRounds(n.sched) > rounds && c.clk.Timers() == 1 }, wait, time.Millisecond)
	requireTimes(t, []time.Time{utc(10, 0, 10)}, c.ticksOf(t, "b"))

	require.True(t, n.sched.UnregisterPeriodic("a"))
	require.False(t, n.sched.UnregisterPeriodic("a"))
	require.False(t, n.sched.UnregisterPeriodic("never"))
	c.settle(t)
	c.step(t)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 0, 10)}, c.ticksOf(t, "a"))
	requireTimes(t, []time.Time{utc(10, 0, 10), utc(10, 0, 20)}, c.ticksOf(t, "b"))
	infos := n.sched.Schedules()
	require.Len(t, infos, 1)
	require.Equal(t, "b", infos[0].Name)

	// With nothing registered the loop waits without a timer.
	rounds = scheduler.PeriodicRounds(n.sched)
	require.True(t, n.sched.UnregisterPeriodic("b"))
	require.Eventually(t, func() bool { return scheduler.PeriodicRounds(n.sched) > rounds && c.clk.Timers() == 0 }, wait, time.Millisecond)
	c.clk.Advance(time.Hour)
	require.Len(t, c.tasks(t), 4)

	// A name can be registered again after it was removed.
	rounds = scheduler.PeriodicRounds(n.sched)
	n.register(t, scheduler.Periodic{Name: "a", Every: time.Hour, Type: "job"})
	require.Eventually(t, func() bool { return scheduler.PeriodicRounds(n.sched) > rounds && c.clk.Timers() == 1 }, wait, time.Millisecond)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 0, 10), utc(11, 0, 0)}, c.ticksOf(t, "a"))
}

// An earlier tick's task that is dead, or still running, never holds up
// the next tick.
func TestPeriodicEarlierTickNeverBlocksTheNext(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 0, 5))
	n := c.addNode(t)
	release := make(chan struct{})
	running := make(chan string, 1)
	w, err := n.sched.NewWorker(scheduler.WithConcurrency(4))
	require.NoError(t, err)
	w.Handle("job", func(ctx context.Context, task *scheduler.Task) error {
		switch {
		case task.Tick.Equal(utc(10, 0, 0)):
			return errors.New("first tick fails")
		case task.Tick.Equal(utc(10, 0, 10)):
			running <- task.ID
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	n.register(t, scheduler.Periodic{Name: "tick", Every: 10 * time.Second, Type: "job", Options: []scheduler.SubmitOption{scheduler.WithMaxRetries(0)}})
	n.start(t)
	c.settle(t)
	first := scheduler.TickID("tick", utc(10, 0, 0))
	dead := waitState(t, n.sched, first, scheduler.StateDead)
	require.Equal(t, "first tick fails", dead.LastError)

	c.step(t) // 10:00:10
	second := <-running
	require.Equal(t, scheduler.StateRunning, waitState(t, n.sched, second, scheduler.StateRunning).State)

	c.step(t) // 10:00:20, while 10:00:10 still runs
	third := waitState(t, n.sched, scheduler.TickID("tick", utc(10, 0, 20)), scheduler.StateSucceeded)
	require.Equal(t, "tick", third.Schedule)
	require.True(t, third.Tick.Equal(utc(10, 0, 20)))
	close(release)
	waitState(t, n.sched, second, scheduler.StateSucceeded)
}

// flakyBroker fails Publish while failing is set.
type flakyBroker struct {
	scheduler.Broker
	failing atomic.Bool
}

func (f *flakyBroker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	if f.failing.Load() {
		return errInjected
	}
	return f.Broker.Publish(ctx, msgs...)
}

// flakyStore fails Create while failing is set.
type flakyStore struct {
	scheduler.Store
	failing atomic.Bool
}

func (f *flakyStore) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	if f.failing.Load() {
		return nil, errInjected
	}
	return f.Store.Create(ctx, tasks)
}

// A tick stored but not published is not lost: no other node may submit
// it again, so it stays in the outbox for the sweep instead of being
// canceled.
func TestPeriodicPublishFailureIsSweptNotLost(t *testing.T) {
	t.Parallel()
	c := newCluster(t, time.Date(2026, 3, 14, 0, 0, 30, 0, time.UTC))
	fb := &flakyBroker{Broker: c.broker}
	fb.failing.Store(true)
	c.broker = fb
	n := c.addNode(t, scheduler.WithSweepInterval(20*time.Millisecond))
	n.register(t, scheduler.Periodic{Name: "nightly", Spec: "@daily", Type: "job"})
	n.start(t)
	c.settle(t)

	fired := n.rec.events(scheduler.TickFired)
	require.Len(t, fired, 1)
	require.ErrorIs(t, fired[0].Err, errInjected)
	id := scheduler.TickID("nightly", time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC))
	require.Equal(t, id, fired[0].TaskID)
	task, err := n.sched.Status(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, scheduler.StatePending, task.State, "stored, not canceled")
	require.Contains(t, n.sched.Schedules()[0].LastError, "outbox sweep")

	fb.failing.Store(false)
	startWorker(t, n.sched, map[string]scheduler.HandlerFunc{"job": ok})
	c.clk.Advance(time.Second) // the outbox entry is now older than three sweep intervals
	waitState(t, n.sched, id, scheduler.StateSucceeded)
}

// A tick skipped after failing throughout its catch-up window leaves no
// backoff behind: the next tick is retried from 1 s again.
func TestPeriodicSkippedTickResetsBackoff(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(9, 59, 50))
	fs := &flakyStore{Store: c.store}
	fs.failing.Store(true)
	c.store = fs
	n := c.startNode(t, scheduler.Periodic{Name: "two", Every: 2 * time.Minute, CatchUp: 30 * time.Second, Type: "job"})
	c.stepUntil(t, utc(10, 1, 0)) // tick 10:00 fails throughout and is skipped
	require.Len(t, n.rec.events(scheduler.TickSkipped), 1)
	require.Equal(t, utc(10, 2, 0), c.step(t)) // tick 10:02 fails once
	fs.failing.Store(false)
	require.Equal(t, utc(10, 2, 1), c.step(t), "the first retry of a new tick comes after 1 s")
	c.stepUntil(t, utc(10, 3, 0))
	requireTimes(t, []time.Time{utc(10, 2, 0)}, c.ticksOf(t, "two"))
}

func TestPeriodicRetriesAStoreFailureWhileCatchUpAllows(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 0, 5))
	fs := &flakyStore{Store: c.store}
	fs.failing.Store(true)
	c.store = fs
	n := c.startNode(t, scheduler.Periodic{Name: "five", Spec: "*/5 * * * *", Type: "job"})
	require.Equal(t, utc(10, 0, 6), c.step(t), "retried after a second")
	require.Equal(t, utc(10, 0, 8), c.step(t), "then after two")
	failed := n.rec.events(scheduler.TickFailed)
	require.Len(t, failed, 3)
	require.ErrorIs(t, failed[0].Err, errInjected)
	require.Contains(t, n.sched.Schedules()[0].LastError, errInjected.Error())

	fs.failing.Store(false)
	require.Equal(t, utc(10, 0, 12), c.step(t))
	requireTimes(t, []time.Time{utc(10, 0, 0)}, c.ticksOf(t, "five"))
	require.Empty(t, n.sched.Schedules()[0].LastError)

	// An outage longer than the catch-up window loses the tick: it is
	// skipped, never submitted late.
	fs.failing.Store(true)
	require.Equal(t, utc(10, 5, 0), c.step(t))
	for c.step(t).Before(utc(10, 6, 0)) {
	}
	fs.failing.Store(false)
	c.stepUntil(t, utc(10, 9, 0))
	requireTimes(t, []time.Time{utc(10, 0, 0)}, c.ticksOf(t, "five"))
	skipped := n.rec.events(scheduler.TickSkipped)
	require.Len(t, skipped, 1)
	require.True(t, skipped[0].Tick.Equal(utc(10, 5, 0)))
	c.step(t)
	requireTimes(t, []time.Time{utc(10, 0, 0), utc(10, 10, 0)}, c.ticksOf(t, "five"))
}

func TestSchedulesListsNextAndLast(t *testing.T) {
	t.Parallel()
	c := newCluster(t, utc(10, 0, 30))
	def := scheduler.Periodic{Name: "five", Spec: "*/5 * * * *", Type: "job", Options: []scheduler.SubmitOption{scheduler.WithQueue("cron")}}
	a := c.addNode(t)
	a.register(t, def)
	info := a.sched.Schedules()[0]
	require.True(t, info.Next.Equal(utc(10, 5, 0)))
	require.True(t, info.Last.IsZero(), "the loop has not run yet")
	a.start(t)
	c.settle(t)
	info = a.sched.Schedules()[0]
	require.True(t, info.Last.Equal(utc(10, 0, 0)))
	require.Equal(t, scheduler.TickID("five", utc(10, 0, 0)), info.LastTaskID)

	// A node started later finds the last tick in the store.
	a.halt(t)
	c.clk.Set(utc(10, 1, 45))
	b := c.startNode(t, def, scheduler.Periodic{Name: "daily", Every: 24 * time.Hour, Type: "job", CatchUp: time.Hour})
	infos := b.sched.Schedules()
	require.Len(t, infos, 2)
	require.Equal(t, "daily", infos[0].Name, "sorted by name")
	require.True(t, infos[0].Last.IsZero(), "never fired")
	require.True(t, infos[0].Next.Equal(time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, "@every 24h0m0s", infos[0].Spec)
	require.Equal(t, "UTC", infos[0].TimeZone)
	five := infos[1]
	require.True(t, five.Last.Equal(utc(10, 0, 0)), "looked up: %s", five.Last)
	require.Equal(t, scheduler.TickID("five", utc(10, 0, 0)), five.LastTaskID)
	require.True(t, five.Next.Equal(utc(10, 5, 0)))
	require.Empty(t, b.rec.events(scheduler.TickFired))

	js, err := json.Marshal(five)
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"five","spec":"*/5 * * * *","time_zone":"UTC","type":"job","queue":"cron","catch_up":"1m0s",
		"next":"2026-03-14T10:05:00Z","last":"2026-03-14T10:00:00Z","last_task_id":"`+five.LastTaskID+`"}`, string(js))
}

func TestRunPeriodicLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.NoError(t, e.sched.RegisterPeriodic(scheduler.Periodic{Name: "x", Spec: "@yearly", Type: "job"}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.sched.RunPeriodic(ctx) }()
	require.Eventually(t, func() bool { return scheduler.PeriodicRounds(e.sched) > 0 }, wait, time.Millisecond)
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	require.ErrorIs(t, e.sched.RunPeriodic(canceled), scheduler.ErrAlreadyRunning)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "a canceled context is a normal stop")
	case <-time.After(wait):
		t.Fatal("RunPeriodic did not stop")
	}

	require.NoError(t, e.sched.Close())
	require.ErrorIs(t, e.sched.RunPeriodic(context.Background()), scheduler.ErrClosed)
}

// TickOutcome names are what metrics label ticks with.
func TestTickOutcomeNames(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "fired", scheduler.TickFired.String())
	assert.Equal(t, "taken", scheduler.TickTaken.String())
	assert.Equal(t, "skipped", scheduler.TickSkipped.String())
	assert.Equal(t, "failed", scheduler.TickFailed.String())
	assert.Equal(t, "unknown", scheduler.TickOutcome(0).String())
}
