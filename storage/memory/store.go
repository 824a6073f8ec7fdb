// Package memstore is an in-memory scheduler.Store for a single process and
// for tests. It has the same semantics as the Redis store: fenced
// transitions, terminal finality, unique keys, the outbox, retention and
// worker heartbeats. Nothing survives the process.
//
//	store := memstore.New()
//	sched, err := scheduler.New(broker, store)
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dtsched/scheduler"
)

// Store is an in-memory scheduler.Store. The zero value is not usable; call
// New. All methods are safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	tasks    map[string]*scheduler.Task
	driving  map[string]int       // id -> attempt of the message driving the task (see Start)
	unique   map[string]string    // unique key -> id of the unfinished task holding it
	outbox   map[string]time.Time // id -> when it is due
	finished []finished           // terminal tasks in the order they finished, for Purge
	counts   [numStates]int64     // by stateIndex
	workers  map[string]worker
	cancels  map[string][]string  // worker id -> canceled running task ids
	claims   map[string]time.Time // key -> expiry
	now      func() time.Time     // measures TTLs
}

// numStates is the number of task states (scheduler.States).
const numStates = 7

// stateOrder lists the states by stateIndex.
var stateOrder = [numStates]scheduler.State{scheduler.StatePending, scheduler.StateScheduled, scheduler.StateRunning,
	scheduler.StateRetrying, scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateCanceled}

// stateIndex is st's index in stateOrder: a cheap key for counts.
func stateIndex(st scheduler.State) int {
	switch st {
	case scheduler.StatePending:
		return 0
	case scheduler.StateScheduled:
		return 1
	case scheduler.StateRunning:
		return 2
	case scheduler.StateRetrying:
		return 3
	case scheduler.StateSucceeded:
		return 4
	case scheduler.StateDead:
		return 5
	}
	return 6 // canceled: the only other state a stored task can be in
}

type finished struct {
	id string
	at time.Time
}

type worker struct {
	info    scheduler.WorkerInfo
	expires time.Time
}

var _ scheduler.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		tasks:   make(map[string]*scheduler.Task),
		driving: make(map[string]int),
		unique:  make(map[string]string),
		outbox:  make(map[string]time.Time),
		workers: make(map[string]worker),
		cancels: make(map[string][]string),
		claims:  make(map[string]time.Time),
		now:     time.Now,
	}
}

// Create implements scheduler.Store.
func (s *Store) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, t := range tasks {
		if err := scheduler.ValidateNew(t); err != nil {
			return nil, fmt.Errorf("task %d: %w", i, err)
		}
	}
	errs := make([]error, len(tasks))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range tasks {
		if _, ok := s.tasks[t.ID]; ok {
			errs[i] = &scheduler.DuplicateError{ExistingID: t.ID}
			continue
		}
		if t.UniqueKey != "" {
			if holder, ok := s.unique[t.UniqueKey]; ok {
				errs[i] = &scheduler.DuplicateError{UniqueKey: t.UniqueKey, ExistingID: holder}
				continue
			}
			s.unique[t.UniqueKey] = t.ID
		}
		c := *t // the payload is shared: Create's caller hands it over
		s.tasks[c.ID] = &c
		s.counts[stateIndex(c.State)]++
		s.outbox[c.ID] = c.RunAt
	}
	return errs, nil
}

// lookup validates id and returns its task; the caller holds s.mu.
func (s *Store) lookup(id string) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, err
	}
	t, ok := s.tasks[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", scheduler.ErrTaskNotFound, id)
	}
	return t, nil
}

// update applies change to the task with id under the lock and returns a
// copy of the result; change returns an error to refuse the transition.
// Every transition refuses a terminal task unless allowTerminal.
func (s *Store) update(ctx context.Context, id string, allowTerminal bool, change func(*scheduler.Task) error) (*scheduler.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	if !allowTerminal && t.State.Terminal() {
		return nil, fmt.Errorf("%w: %s is %s", scheduler.ErrTaskFinished, id, t.State)
	}
	if err := change(t); err != nil {
		return nil, err
	}
	return t.Clone(), nil
}

// Get implements scheduler.Store.
func (s *Store) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	return t.Clone(), nil
}

// setState moves t to st keeping the per-state counts; the caller holds s.mu.
func (s *Store) setState(t *scheduler.Task, st scheduler.State) {
	s.counts[stateIndex(t.State)]--
	s.counts[stateIndex(st)]++
	t.State = st
	if st.Terminal() {
		if t.UniqueKey != "" && s.unique[t.UniqueKey] == t.ID {
			delete(s.unique, t.UniqueKey)
		}
		delete(s.outbox, t.ID)
		s.finished = append(s.finished, finished{id: t.ID, at: t.FinishedAt})
	}
}

// Start implements scheduler.Store.
func (s *Store) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	return s.update(ctx, id, false, func(t *scheduler.Task) error {
		fresh := t.State.Waiting() && t.Attempt == p.Attempt
		takeover := p.Redelivered && (t.State == scheduler.StateRunning || t.State == scheduler.StatePending) &&
			t.Attempt > p.Attempt && s.driving[id] == p.Attempt
		if !fresh && !takeover {
			return fmt.Errorf("%w: %s is %s at attempt %d, message for attempt %d", scheduler.ErrStaleAttempt, id, t.State, t.Attempt, p.Attempt)
		}
		s.setState(t, scheduler.StateRunning)
		s.driving[id] = p.Attempt
		t.Attempt++
		t.StartedAt = p.Now
		t.WorkerID = p.WorkerID
		delete(s.outbox, id)
		return nil
	})
}

// Finish implements scheduler.Store.
func (s *Store) Finish(ctx context.Context, id string, p scheduler.FinishParams) (*scheduler.Task, error) {
	switch p.State {
	case scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateRetrying, scheduler.StateScheduled, scheduler.StatePending:
	default:
		return nil, &scheduler.ValidationError{Field: "state", Reason: fmt.Sprintf("cannot finish an attempt as %q", p.State)}
	}
	return s.update(ctx, id, false, func(t *scheduler.Task) error {
		if t.State != scheduler.StateRunning || t.Attempt != p.Attempt {
			return fmt.Errorf("%w: %s is %s at attempt %d, finishing attempt %d", scheduler.ErrStaleAttempt, id, t.State, t.Attempt, p.Attempt)
		}
		if p.Error != "" {
			t.LastError = p.Error
		}
		t.MaxRetries += p.AddRetries
		switch p.State {
		case scheduler.StateSucceeded:
			t.Result = append([]byte(nil), p.Result...)
			t.FinishedAt = p.Now
		case scheduler.StateDead:
			t.FinishedAt = p.Now
		case scheduler.StateRetrying, scheduler.StateScheduled:
			t.RunAt = p.RunAt
			s.outbox[id] = p.RunAt
		}
		s.setState(t, p.State)
		return nil
	})
}

// Cancel implements scheduler.Store.
func (s *Store) Cancel(ctx context.Context, id string, p scheduler.CancelParams) (*scheduler.Task, error) {
	return s.update(ctx, id, false, func(t *scheduler.Task) error {
		if p.OnlyUnstarted && (t.Attempt != 0 || !(t.State == scheduler.StatePending || t.State == scheduler.StateScheduled)) {
			return fmt.Errorf("%w: %s already started", scheduler.ErrStaleAttempt, id)
		}
		if t.State == scheduler.StateRunning && t.WorkerID != "" {
			s.cancels[t.WorkerID] = append(s.cancels[t.WorkerID], id)
		}
		t.LastError = p.Reason
		t.FinishedAt = p.Now
		s.setState(t, scheduler.StateCanceled)
		return nil
	})
}

// Retry implements scheduler.Store.
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*scheduler.Task, error) {
	return s.update(ctx, id, true, func(t *scheduler.Task) error {
		if t.State != scheduler.StateDead && t.State != scheduler.StateCanceled {
			return fmt.Errorf("%w: %s is %s", scheduler.ErrNotRetryable, id, t.State)
		}
		s.setState(t, scheduler.StatePending)
		t.MaxRetries += t.Attempt
		t.FinishedAt = time.Time{}
		t.RunAt = now
		s.outbox[id] = now
		return nil
	})
}

// Outbox implements scheduler.Store.
func (s *Store) Outbox(ctx context.Context, before time.Time, limit int) ([]*scheduler.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type entry struct {
		id string
		at time.Time
	}
	var due []entry
	for id, at := range s.outbox {
		if at.Before(before) {
			due = append(due, entry{id, at})
		}
	}
	slices.SortFunc(due, func(a, b entry) int { return a.at.Compare(b.at) })
	var out []*scheduler.Task
	for _, e := range due {
		if len(out) == limit {
			break
		}
		out = append(out, s.tasks[e.id].Clone())
	}
	return out, nil
}

// Published implements scheduler.Store.
func (s *Store) Published(ctx context.Context, msgs ...scheduler.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if t, ok := s.tasks[m.TaskID]; ok && t.State.Waiting() && t.Attempt == m.Attempt {
			delete(s.outbox, m.TaskID)
		}
	}
	return nil
}

// List implements scheduler.Store. Pages are ordered by ID, newest first;
// the cursor is the last ID of the previous page.
func (s *Store) List(ctx context.Context, f scheduler.ListFilter) (scheduler.Page, error) {
	if err := ctx.Err(); err != nil {
		return scheduler.Page{}, err
	}
	if f.Cursor != "" {
		if err := scheduler.ValidateID(f.Cursor); err != nil {
			return scheduler.Page{}, fmt.Errorf("cursor: %w", err)
		}
	}
	s.mu.Lock()
	var match []*scheduler.Task
	for id, t := range s.tasks {
		if (f.State == "" || t.State == f.State) && (f.Type == "" || t.Type == f.Type) &&
			(f.Queue == "" || t.Queue == f.Queue) && (f.Cursor == "" || id < f.Cursor) {
			match = append(match, t)
		}
	}
	sort.Slice(match, func(i, j int) bool { return match[i].ID > match[j].ID })
	size := f.PageSize()
	var page scheduler.Page
	for i, t := range match {
		if i == size {
			page.Next = page.Tasks[size-1].ID
			break
		}
		page.Tasks = append(page.Tasks, t.Clone())
	}
	s.mu.Unlock()
	return page, nil
}

// Counts implements scheduler.Store.
func (s *Store) Counts(ctx context.Context) (map[scheduler.State]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[scheduler.State]int64, len(s.counts))
	for i, n := range s.counts {
		st := stateOrder[i]
		if n != 0 {
			out[st] = n
		}
	}
	return out, nil
}

// Purge implements scheduler.Store.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, i := 0, 0
	for ; i < len(s.finished) && n < limit; i++ {
		e := s.finished[i]
		if !e.at.Before(before) {
			break
		}
		t, ok := s.tasks[e.id]
		if !ok || !t.State.Terminal() || !t.FinishedAt.Equal(e.at) {
			continue // retried since, or already purged: a stale entry
		}
		delete(s.tasks, e.id)
		delete(s.driving, e.id)
		s.counts[stateIndex(t.State)]--
		n++
	}
	s.finished = slices.Delete(s.finished, 0, i)
	return n, nil
}

// Heartbeat implements scheduler.Store.
func (s *Store) Heartbeat(ctx context.Context, w scheduler.WorkerInfo, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if w.ID == "" {
		return nil, &scheduler.ValidationError{Field: "worker_id", Reason: "must not be empty"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Queues = slices.Clone(w.Queues)
	s.workers[w.ID] = worker{info: w, expires: s.now().Add(ttl)}
	canceled := s.cancels[w.ID]
	delete(s.cancels, w.ID)
	return canceled, nil
}

// RemoveWorker implements scheduler.Store.
func (s *Store) RemoveWorker(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.workers, id)
	delete(s.cancels, id)
	return nil
}

// Workers implements scheduler.Store.
func (s *Store) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []scheduler.WorkerInfo
	for id, w := range s.workers {
		if !now.Before(w.expires) {
			delete(s.workers, id)
			continue
		}
		info := w.info
		info.Queues = slices.Clone(info.Queues)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b scheduler.WorkerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Claim implements scheduler.Store.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if exp, ok := s.claims[key]; ok && now.Before(exp) {
		return false, nil
	}
	if len(s.claims) > 1024 {
		for k, exp := range s.claims {
			if !now.Before(exp) {
				delete(s.claims, k)
			}
		}
	}
	s.claims[key] = now.Add(ttl)
	return true, nil
}

// Ping implements scheduler.Store.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }
