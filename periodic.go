package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler/internal/clock"
)

// Periodic defines a task submitted on a schedule. Register it with
// Scheduler.RegisterPeriodic on every node that runs RunPeriodic; each tick
// then submits one task across all of them.
type Periodic struct {
	// Name identifies the schedule across the cluster: every node
	// registering a schedule of this name must give it the same definition.
	// It becomes the Schedule field of each task submitted. 1 to
	// MaxTypeLen bytes of ASCII letters, digits and . _ : -
	Name string
	// Spec is a cron spec in the standard five fields (minute hour
	// day-of-month month day-of-week, e.g. "30 2 * * *" or "*/5 9-17 * * 1-5"),
	// a descriptor (@yearly, @monthly, @weekly, @daily, @hourly) or
	// "@every <duration>" (same as Every). It may start with CRON_TZ=<zone>
	// to name its time zone. Give Spec or Every, not both.
	Spec string
	// Every is a fixed interval of at least a second. Ticks fall on every
	// multiple of it since 1970-01-01 00:00 UTC, so that every node agrees
	// on them: an hour ticks at each full hour UTC.
	Every time.Duration
	// Location is the time zone a Spec is read in, unless the Spec names
	// one with CRON_TZ=. Defaults to UTC. time.Local is refused: it may
	// differ between nodes. An interval has no time zone.
	Location *time.Location
	// CatchUp is how late a tick may still be submitted. When the loop
	// starts, or wakes up late (the process was paused, the store was
	// unreachable), it submits only the most recent tick that is due and
	// at most CatchUp old, once; earlier ones are skipped. No burst of
	// missed ticks ever follows downtime. Defaults to DefaultCatchUp (one
	// minute), which skips ticks missed while no node ran the loop; set it
	// to the time between ticks (or longer) to run the most recent missed
	// tick after any downtime. At least one second, and shorter than the
	// Scheduler's retention (see WithRetention).
	CatchUp time.Duration
	// Type is the task type to submit.
	Type string
	// Payload is the payload of every submitted task.
	Payload []byte
	// Options apply to every submitted task: WithPriority, WithQueue,
	// WithMaxRetries, WithTimeout. WithDelay, WithRunAt and WithUniqueKey
	// are refused: a periodic task runs at its tick, and a unique key would
	// let one tick's unfinished task hold up the next.
	Options []SubmitOption
}

// DefaultCatchUp is the CatchUp of a Periodic that sets none.
const DefaultCatchUp = time.Minute

// ErrInvalidSchedule: a Periodic given to RegisterPeriodic is invalid. The
// error is a *ScheduleError naming the field. Nothing was registered.
var ErrInvalidSchedule = errors.New("scheduler: invalid schedule")

// ScheduleError reports what is wrong with a Periodic.
type ScheduleError struct {
	Name   string // the schedule's name
	Field  string // "name", "spec", "every", "location", "catch_up", "options", or a task field such as "type" or "priority"
	Reason string
	Err    error // the cause, if any: the cron parser's error or a *ValidationError
}

func (e *ScheduleError) Error() string {
	return fmt.Sprintf("scheduler: invalid schedule %q: %s: %s", e.Name, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidSchedule) true.
func (e *ScheduleError) Is(target error) bool { return target == ErrInvalidSchedule }

// Unwrap returns the cause.
func (e *ScheduleError) Unwrap() error { return e.Err }

func scheduleErr(field, reason string, cause error) *ScheduleError {
	return &ScheduleError{Field: field, Reason: reason, Err: cause}
}

// ScheduleInfo describes a registered schedule, as Schedules lists it.
type ScheduleInfo struct {
	Name     string `json:"name"`
	Spec     string `json:"spec"`      // the Spec, or "@every <Every>"
	TimeZone string `json:"time_zone"` // the zone the Spec is read in; UTC for an interval
	Type     string `json:"type"`
	Queue    string `json:"queue"`
	// CatchUp is the schedule's CatchUp (JSON: a Go duration string).
	CatchUp time.Duration `json:"-"`
	// Next is the next tick, in the schedule's time zone; zero if the
	// schedule never fires again.
	Next time.Time `json:"next,omitzero"`
	// Last is the latest tick this Scheduler saw submitted by any node
	// (itself included), in the schedule's time zone. When RunPeriodic
	// starts, it is looked up in the store. Zero if unknown.
	Last time.Time `json:"last,omitzero"`
	// LastTaskID is the ID of Last's task.
	LastTaskID string `json:"last_task_id,omitempty"`
	// LastError is the error of this Scheduler's latest attempt to submit a
	// tick; empty when it succeeded.
	LastError string `json:"last_error,omitempty"`
}

// MarshalJSON encodes i with snake_case fields and CatchUp as a Go
// duration string.
func (i ScheduleInfo) MarshalJSON() ([]byte, error) {
	type plain ScheduleInfo
	return json.Marshal(struct {
		plain
		CatchUp string `json:"catch_up"`
	}{plain(i), i.CatchUp.String()})
}

// TickOutcome says what a Scheduler did with a tick.
type TickOutcome int

// The outcomes of a tick. Across the nodes running RunPeriodic, each tick
// is TickFired on exactly one, TickTaken on the others that reached it.
const (
	TickFired   TickOutcome = iota + 1 // this Scheduler submitted the tick's task
	TickTaken                          // another node had already submitted it
	TickSkipped                        // passed over by the catch-up policy (TickEvent.Count ticks)
	TickFailed                         // the store could not be reached; retried while CatchUp allows
)

var tickOutcomeNames = [...]string{"", "fired", "taken", "skipped", "failed"}

// String returns the outcome's lower-case name, e.g. "fired".
func (o TickOutcome) String() string {
	if o > 0 && int(o) < len(tickOutcomeNames) {
		return tickOutcomeNames[o]
	}
	return "unknown"
}

// TickEvent is what happened to a tick of a schedule on this Scheduler.
type TickEvent struct {
	Schedule string
	// Tick is the tick; for TickSkipped the first of the ticks skipped.
	Tick    time.Time
	Outcome TickOutcome
	// Count is the number of ticks skipped for TickSkipped, else 1.
	Count int
	// TaskID is the tick's task for TickFired and TickTaken.
	TaskID string
	// Err is the store error for TickFailed; for TickFired, a publish
	// error (the task is stored, and a worker's outbox sweep delivers it).
	Err error
	// Time is when it happened.
	Time time.Time
}

// TickObserver receives tick events, for metrics. An Observer given to
// WithObserver that also implements TickObserver receives them. ObserveTick
// is called from the goroutine running RunPeriodic, after the tick's store
// writes: it must be fast and must not block.
type TickObserver interface {
	ObserveTick(TickEvent)
}

// periodicState is the Scheduler's registry of schedules and the state of
// its periodic loop. The zero value is ready to use.
type periodicState struct {
	mu      sync.Mutex
	entries map[string]*schedule
	wake    chan struct{} // tells the loop that entries changed

	running atomic.Bool
	round   sync.Mutex   // held while the loop submits ticks
	rounds  atomic.Int64 // completed rounds, for tests
	clock   clock.Clock  // nil: the system clock
}

// schedule is a registered Periodic and the loop's state for it.
type schedule struct {
	name     string
	spec     string
	timing   timing
	loc      *time.Location
	catchUp  time.Duration
	taskType string
	payload  []byte
	opts     []SubmitOption
	queue    string

	// Loop state, guarded by periodicState.mu.
	armed    bool          // the running loop has taken the schedule up
	cursor   time.Time     // every tick at or before it is dealt with
	retryAt  time.Time     // after a store failure: when to try again
	backoff  time.Duration // the last retry delay
	lookedUp bool          // Last was looked up in the store
	last     time.Time
	lastID   string
	lastErr  string
}

// Timings of the loop.
const (
	roundTimeout     = 30 * time.Second // bounds the store and broker calls of one round
	minTickBackoff   = time.Second
	maxTickBackoff   = time.Minute
	lastLookupWindow = 366 * 24 * time.Hour // how far back RunPeriodic looks for Last
)

// RegisterPeriodic adds a schedule; if RunPeriodic is running, its ticks
// start at once (a tick at most CatchUp old is submitted right away). A
// Periodic that is invalid, or whose name is taken, gives a
// *ScheduleError (errors.Is ErrInvalidSchedule) and registers nothing.
func (s *Scheduler) RegisterPeriodic(p Periodic) error {
	if s.closed.Load() {
		return ErrClosed
	}
	e, err := s.newSchedule(p)
	if err != nil {
		err.Name = p.Name
		return err
	}
	ps := &s.periodic
	ps.mu.Lock()
	if _, ok := ps.entries[p.Name]; ok {
		ps.mu.Unlock()
		return &ScheduleError{Name: p.Name, Field: "name", Reason: "already registered; unregister it first"}
	}
	if ps.entries == nil {
		ps.entries = make(map[string]*schedule)
	}
	ps.entries[p.Name] = e
	ps.mu.Unlock()
	ps.signal()
	return nil
}

// newSchedule validates p and builds its schedule.
func (s *Scheduler) newSchedule(p Periodic) (*schedule, *ScheduleError) {
	if err := validateName("schedule", p.Name, MaxTypeLen, "._:-"); err != nil {
		return nil, scheduleErr("name", reasonOf(err), err)
	}
	now := s.now()
	tm, loc, err := parseTiming(p.Spec, p.Every, p.Location, now)
	if err != nil {
		if se := errorAs[*ScheduleError](err); se != nil {
			return nil, se
		}
		return nil, scheduleErr("spec", err.Error(), err)
	}
	catchUp := cmp.Or(p.CatchUp, DefaultCatchUp)
	switch {
	case catchUp < time.Second:
		return nil, scheduleErr("catch_up", fmt.Sprintf("%s: must be at least one second", catchUp), nil)
	case s.cfg.retention > 0 && catchUp >= s.cfg.retention:
		return nil, scheduleErr("catch_up", fmt.Sprintf("%s: must be shorter than the retention (%s), so that a tick's task is still stored when a late node reaches the tick", catchUp, s.cfg.retention), nil)
	}
	var c submitConfig
	for _, o := range p.Options {
		if o == nil {
			return nil, scheduleErr("options", "nil submit option", nil)
		}
		o.applySubmit(&c)
	}
	switch {
	case c.uniqueKey != "":
		return nil, scheduleErr("options", "WithUniqueKey: each tick is already submitted once, and a unique key would let one tick's unfinished task hold up the next", nil)
	case c.delay != 0 || !c.runAt.IsZero():
		return nil, scheduleErr("options", "WithDelay and WithRunAt: a periodic task runs at its tick; change the schedule instead", nil)
	}
	if _, err := s.newTask(p.Type, p.Payload, p.Options, now); err != nil {
		if ve := errorAs[*ValidationError](err); ve != nil {
			return nil, scheduleErr(ve.Field, ve.Reason, err)
		}
		return nil, scheduleErr("options", err.Error(), err)
	}
	spec := p.Spec
	if p.Every != 0 {
		spec = "@every " + p.Every.String()
	}
	return &schedule{
		name: p.Name, spec: spec, timing: tm, loc: loc, catchUp: catchUp,
		taskType: p.Type, payload: cloneBytes(p.Payload), opts: slices.Clone(p.Options),
		queue: cmp.Or(c.queue, DefaultQueue),
	}, nil
}

func reasonOf(err error) string {
	if ve := errorAs[*ValidationError](err); ve != nil {
		return ve.Reason
	}
	return err.Error()
}

// UnregisterPeriodic removes the schedule named name and reports whether
// it was registered. Once it returns, this Scheduler submits no more ticks
// of it (a tick being submitted at the time completes first). It must not
// be called from an Observer.
func (s *Scheduler) UnregisterPeriodic(name string) bool {
	ps := &s.periodic
	ps.round.Lock() // waits for a round in progress
	ps.mu.Lock()
	_, ok := ps.entries[name]
	delete(ps.entries, name)
	ps.mu.Unlock()
	ps.round.Unlock()
	if ok {
		ps.signal()
	}
	return ok
}

// Schedules returns the registered schedules, sorted by name.
func (s *Scheduler) Schedules() []ScheduleInfo {
	now := s.now()
	ps := &s.periodic
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]ScheduleInfo, 0, len(ps.entries))
	for _, e := range ps.entries {
		info := ScheduleInfo{
			Name: e.name, Spec: e.spec, TimeZone: e.loc.String(), Type: e.taskType, Queue: e.queue,
			CatchUp: e.catchUp, LastTaskID: e.lastID, LastError: e.lastErr,
		}
		if n := e.timing.next(now); !n.IsZero() {
			info.Next = n.In(e.loc)
		}
		if !e.last.IsZero() {
			info.Last = e.last.In(e.loc)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b ScheduleInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// RunPeriodic submits the ticks of the registered schedules until ctx
// ends, then returns nil. Run it on any number of nodes sharing the
// store: each tick is submitted once across all of them (the tick's task
// ID is derived from the schedule's name and the tick, and the store
// admits one task per ID), so there is no leader to elect and nothing to
// fail over. Node clocks should be in sync: a node whose clock runs ahead
// submits ticks early.
//
// Schedules may be registered and unregistered while it runs. It returns
// ErrAlreadyRunning if it already runs on this Scheduler, and ErrClosed if
// the Scheduler is closed (at its next wake-up after Close; cancel ctx to
// stop it at once).
func (s *Scheduler) RunPeriodic(ctx context.Context) error {
	ps := &s.periodic
	if !ps.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer func() {
		ps.disarm()
		ps.running.Store(false)
	}()
	if s.closed.Load() {
		return ErrClosed
	}
	clk := ps.clockOrReal()
	wake := ps.wakeC()
	select { // the first round covers every change so far
	case <-wake:
	default:
	}
	s.log.Info("periodic loop started")
	defer s.log.Info("periodic loop stopped")
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s.closed.Load() {
			return ErrClosed
		}
		wakeAt, err := s.periodicRound(ctx)
		if err != nil {
			return err
		}
		var timer clock.Timer
		var fire <-chan time.Time
		if !wakeAt.IsZero() {
			timer = clk.NewTimer(wakeAt.Sub(s.now()))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// periodicRound submits the due ticks and returns when the next is due
// (zero if none is). Events go to the observers after the round.
func (s *Scheduler) periodicRound(ctx context.Context) (time.Time, error) {
	ps := &s.periodic
	ps.round.Lock()
	r := s.fireDue(ctx)
	ps.round.Unlock()
	ps.rounds.Add(1)
	for _, t := range r.submitted {
		s.emit(Event{Kind: EventSubmitted, Task: t, Time: r.now})
	}
	for _, e := range r.ticks {
		if e.Outcome == TickFailed && ctx.Err() != nil {
			continue // the loop is stopping, not the store failing
		}
		s.emitTick(e)
	}
	return r.wakeAt, r.err
}

type roundResult struct {
	now       time.Time
	wakeAt    time.Time
	err       error
	ticks     []TickEvent
	submitted []*Task
}

// firing is a tick being submitted.
type firing struct {
	e    *schedule
	tick time.Time
	task *Task
	out  TickOutcome
	err  error
}

func (s *Scheduler) fireDue(ctx context.Context) roundResult {
	ps := &s.periodic
	now := s.now()
	r := roundResult{now: now}
	var due []*firing
	var lookups []*schedule

	ps.mu.Lock()
	for _, e := range ps.entries {
		if !e.armed {
			// The latest tick at most catchUp old is due; earlier ones are
			// not this loop's to count as skipped (other nodes may have
			// submitted them).
			e.armed, e.cursor, e.retryAt = true, now, time.Time{}
			if l := latestTick(e.timing, now, e.catchUp+1); !l.IsZero() {
				e.cursor = l.Add(-1)
			}
			if !e.lookedUp {
				lookups = append(lookups, e)
			}
		}
		if now.Before(e.retryAt) {
			continue
		}
		first := e.timing.next(e.cursor)
		if first.IsZero() || first.After(now) {
			continue
		}
		latest := latestTick(e.timing, now, now.Sub(e.cursor))
		skipped := countTicks(e.timing, e.cursor, latest)
		late := now.Sub(latest) > e.catchUp
		if late {
			skipped++
		}
		if skipped > 0 {
			r.ticks = append(r.ticks, TickEvent{Schedule: e.name, Tick: first, Outcome: TickSkipped, Count: skipped, Time: now})
			e.backoff = 0 // a failed tick's backoff is its own: the next starts afresh
		}
		e.cursor = latest
		if !late {
			due = append(due, &firing{e: e, tick: latest})
		}
	}
	ps.mu.Unlock()

	for _, f := range r.ticks {
		s.log.Info("periodic ticks skipped (catch-up policy)", zap.String("schedule", f.Schedule), zap.Int("ticks", f.Count), zap.Time("first", f.Tick))
	}
	s.lookUpLast(ctx, lookups)
	if len(due) > 0 {
		if s.closed.Load() {
			r.err = ErrClosed
			return r
		}
		slices.SortFunc(due, func(a, b *firing) int { return cmp.Compare(a.e.name, b.e.name) })
		r.submitted = s.submitTicks(ctx, due, now)
	}

	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, f := range due {
		e := f.e
		ev := TickEvent{Schedule: e.name, Tick: f.tick, Outcome: f.out, Count: 1, Err: f.err, Time: now}
		switch f.out {
		case TickFired, TickTaken:
			ev.TaskID = f.task.ID
			if f.tick.After(e.last) {
				e.last, e.lastID = f.tick, f.task.ID
			}
			e.lastErr, e.backoff = "", 0
		case TickFailed:
			e.backoff = min(max(2*e.backoff, minTickBackoff), maxTickBackoff)
			e.retryAt, e.cursor = now.Add(e.backoff), f.tick.Add(-1) // the tick is due again
		}
		if f.err != nil {
			e.lastErr = f.err.Error()
		}
		r.ticks = append(r.ticks, ev)
	}
	for _, e := range ps.entries {
		if !e.armed {
			continue // registered during the round: the wake signal is pending
		}
		w := e.timing.next(e.cursor)
		if now.Before(e.retryAt) {
			w = e.retryAt
		}
		if !w.IsZero() && (r.wakeAt.IsZero() || w.Before(r.wakeAt)) {
			r.wakeAt = w
		}
	}
	return r
}

// submitTicks stores the due ticks' tasks (one batch: the store admits
// the first task of each ID, so of all nodes submitting a tick one
// succeeds), publishes those this node stored, and records each outcome in
// its firing. It returns the tasks stored and published.
func (s *Scheduler) submitTicks(ctx context.Context, due []*firing, now time.Time) []*Task {
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	tasks := make([]*Task, 0, len(due))
	var pending []*firing
	for _, f := range due {
		t, err := s.newTask(f.e.taskType, f.e.payload, f.e.opts, now)
		if err != nil { // validated at registration; only a changed limit gets here
			f.out, f.err = TickFailed, err
			continue
		}
		t.ID, t.Schedule, t.Tick = tickID(f.e.name, f.tick), f.e.name, f.tick.UTC()
		f.task = t
		tasks = append(tasks, t)
		pending = append(pending, f)
	}
	if len(tasks) == 0 {
		return nil
	}
	errs, err := s.store.Create(ctx, tasks)
	if err == nil && len(errs) != len(tasks) {
		err = fmt.Errorf("store returned %d results for %d tasks", len(errs), len(tasks))
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("periodic ticks not submitted: store failed; retrying", zap.Int("ticks", len(tasks)), zap.Error(err))
		}
		for _, f := range pending {
			f.out, f.err = TickFailed, fmt.Errorf("scheduler: store: %w", err)
		}
		return nil
	}
	var created []*firing
	for i, f := range pending {
		switch dup := errorAs[*DuplicateError](errs[i]); {
		case errs[i] == nil:
			f.out = TickFired
			created = append(created, f)
		case dup != nil && dup.ExistingID == f.task.ID:
			f.out = TickTaken
		default:
			f.out, f.err = TickFailed, errs[i]
			s.log.Warn("periodic tick not submitted", zap.String("schedule", f.e.name), zap.Time("tick", f.tick), zap.Error(errs[i]))
		}
	}
	if len(created) == 0 {
		return nil
	}
	msgs := make([]Message, len(created))
	for i, f := range created {
		msgs[i] = messageFor(f.task, now)
	}
	if perr := s.broker.Publish(ctx, msgs...); perr != nil {
		// The tasks are stored and in the outbox: a worker's sweep
		// publishes them. Canceling them, as Submit does, would lose the
		// ticks, since no other node can submit them again.
		s.log.Error("periodic tasks stored but not published; the outbox sweep publishes them", zap.Int("tasks", len(created)), zap.Error(perr))
		for _, f := range created {
			f.err = fmt.Errorf("scheduler: publish: %w (task %s is stored; the outbox sweep publishes it)", perr, f.task.ID)
		}
		return nil
	}
	s.confirmed(msgs...)
	out := make([]*Task, len(created))
	for i, f := range created {
		s.log.Debug("periodic tick submitted", zap.String("schedule", f.e.name), zap.Time("tick", f.tick), zap.String("task_id", f.task.ID))
		out[i] = f.task
	}
	return out
}

// lookUpLast fills in Last of newly armed schedules from the store: the
// latest tick older than the catch-up window (newer ones the round
// submits), if its task is still stored.
func (s *Scheduler) lookUpLast(ctx context.Context, es []*schedule) {
	ps := &s.periodic
	for _, e := range es {
		ps.mu.Lock()
		cursor := e.cursor
		ps.mu.Unlock()
		tick := latestTick(e.timing, cursor, lastLookupWindow)
		found := false
		var id string
		if !tick.IsZero() {
			id = tickID(e.name, tick)
			gctx, cancel := context.WithTimeout(ctx, roundTimeout)
			_, err := s.store.Get(gctx, id)
			cancel()
			found = err == nil
		}
		ps.mu.Lock()
		e.lookedUp = true
		if found && tick.After(e.last) {
			e.last, e.lastID = tick, id
		}
		ps.mu.Unlock()
	}
}

// emitTick sends e to the observers that are TickObservers.
func (s *Scheduler) emitTick(e TickEvent) {
	for _, o := range s.cfg.observers {
		if to, ok := o.(TickObserver); ok {
			to.ObserveTick(e)
		}
	}
}

func (p *periodicState) wakeC() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == nil {
		p.wake = make(chan struct{}, 1)
	}
	return p.wake
}

// signal wakes the loop, if it runs, to look at the entries again.
func (p *periodicState) signal() {
	select {
	case p.wakeC() <- struct{}{}:
	default:
	}
}

// disarm forgets the loop state when the loop stops: a later RunPeriodic
// starts afresh, with the catch-up policy.
func (p *periodicState) disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		e.armed, e.retryAt, e.backoff = false, time.Time{}, 0
	}
}

func (p *periodicState) clockOrReal() clock.Clock {
	if p.clock != nil {
		return p.clock
	}
	return clock.Real{}
}
