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
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dtsched/scheduler"
)

// Store is an in-memory scheduler.Store. The zero value is not usable; call
// New. All methods are safe for concurrent use.
//
// Tasks are spread over shards by a hash of their ID, each with its own
// mutex, so that transitions of different tasks rarely wait for each
// other. A transition locks the one shard of its task; Counts, List and
// Outbox lock every shard (in order) and so see one consistent state.
// Unique keys, which span shards, and the worker registry have mutexes of
// their own, always taken after a shard's, never before.
type Store struct {
	seed   maphash.Seed
	shards [numShards]shard

	uniqueMu sync.Mutex
	unique   map[string]string // unique key -> id of the unfinished task holding it

	metaMu  sync.Mutex
	workers map[string]worker
	cancels map[string][]string  // worker id -> canceled running task ids
	claims  map[string]time.Time // key -> expiry
	now     func() time.Time     // measures TTLs
}

// numShards is the number of task shards.
const numShards = 32

// shard holds the tasks whose ID hashes to it.
type shard struct {
	mu       sync.Mutex
	tasks    map[string]*record
	outbox   []outboxEntry    // in the order added, stale entries among them
	inOutbox int              // tasks in the outbox: the live entries of outbox
	finished []finished       // terminal tasks in the order they finished, for Purge
	counts   [numStates]int64 // by stateIndex
	_        [64]byte         // keeps neighbouring shards' mutexes off one cache line
}

// record is a stored task.
type record struct {
	task      scheduler.Task
	driving   int    // attempt of the message driving the task (see Start)
	drivingID string // its ID, when the broker gives one
	// The task is in the outbox, due at due, while queued; the outbox
	// entry of gen is its current one.
	queued bool
	gen    uint32
	due    time.Time
}

// outboxEntry is an entry of a shard's outbox list. Taking a task out of
// the outbox only marks its record; the entry stays, stale, until the list
// is compacted. So a task enters and leaves the outbox, as nearly every
// task does within milliseconds, without any map operation.
type outboxEntry struct {
	r   *record
	gen uint32
}

// live reports whether e is the current entry of a task in the outbox.
func (e outboxEntry) live() bool { return e.r.queued && e.r.gen == e.gen }

// enqueue puts r in the outbox (replacing any earlier entry), due at its
// task's RunAt; the caller holds sh.mu.
func (sh *shard) enqueue(r *record) {
	if !r.queued {
		sh.inOutbox++
	}
	r.queued = true
	r.due = r.task.RunAt
	r.gen++
	if len(sh.outbox) >= 2*sh.inOutbox+256 {
		live := sh.outbox[:0]
		for _, e := range sh.outbox {
			if e.live() {
				live = append(live, e)
			}
		}
		clear(sh.outbox[len(live):])
		sh.outbox = live
	}
	sh.outbox = append(sh.outbox, outboxEntry{r: r, gen: r.gen})
}

// dequeue takes r out of the outbox; the caller holds sh.mu.
func (sh *shard) dequeue(r *record) {
	if r.queued {
		r.queued = false
		sh.inOutbox--
	}
}

// numStates is the number of task states (scheduler.States).
const numStates = 7

// stateIndex is st's index in scheduler.States: a cheap key for counts.
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
	s := &Store{
		seed:    maphash.MakeSeed(),
		unique:  make(map[string]string),
		workers: make(map[string]worker),
		cancels: make(map[string][]string),
		claims:  make(map[string]time.Time),
		now:     time.Now,
	}
	for i := range s.shards {
		s.shards[i].tasks = make(map[string]*record)
	}
	return s
}

// shard returns the shard of the task with id.
func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%numShards]
}

// lockAll locks every shard, in order; unlockAll releases them.
func (s *Store) lockAll() {
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
}

func (s *Store) unlockAll() {
	for i := range s.shards {
		s.shards[i].mu.Unlock()
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
	for i, t := range tasks {
		r := &record{task: *t} // the payload is shared: Create's caller hands it over
		sh := s.shard(t.ID)
		sh.mu.Lock()
		errs[i] = s.insert(sh, r)
		sh.mu.Unlock()
	}
	return errs, nil
}

// insert stores the new task r in sh, or returns a *DuplicateError; the
// caller holds sh.mu.
func (s *Store) insert(sh *shard, r *record) error {
	t := &r.task
	if _, ok := sh.tasks[t.ID]; ok {
		return &scheduler.DuplicateError{ExistingID: t.ID}
	}
	if t.UniqueKey != "" {
		s.uniqueMu.Lock()
		holder, ok := s.unique[t.UniqueKey]
		if !ok {
			s.unique[t.UniqueKey] = t.ID
		}
		s.uniqueMu.Unlock()
		if ok {
			return &scheduler.DuplicateError{UniqueKey: t.UniqueKey, ExistingID: holder}
		}
	}
	sh.tasks[t.ID] = r
	sh.counts[stateIndex(t.State)]++
	sh.enqueue(r)
	return nil
}

// lock validates id, locks its shard and returns the shard and the task's
// record. On error the shard is not locked.
func (s *Store) lock(ctx context.Context, id string) (*shard, *record, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := scheduler.ValidateID(id); err != nil {
		return nil, nil, err
	}
	sh := s.shard(id)
	sh.mu.Lock()
	r, ok := sh.tasks[id]
	if !ok {
		sh.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s", scheduler.ErrTaskNotFound, id)
	}
	return sh, r, nil
}

// lockLive is lock for a transition: it refuses a terminal task with
// ErrTaskFinished.
func (s *Store) lockLive(ctx context.Context, id string) (*shard, *record, error) {
	sh, r, err := s.lock(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if r.task.State.Terminal() {
		st := r.task.State
		sh.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s is %s", scheduler.ErrTaskFinished, id, st)
	}
	return sh, r, nil
}

// unlockCopy releases sh and returns a deep copy of r's task as it was
// under the lock. The copy is allocated after the unlock, so that the lock
// is never held across an allocation (and the garbage collector's work an
// allocation may take on); the payload and result slices are never
// modified in place, only replaced, so copying their bytes after the
// unlock is safe.
func unlockCopy(sh *shard, r *record) *scheduler.Task {
	t := r.task
	sh.mu.Unlock()
	return t.Clone()
}

// Get implements scheduler.Store.
func (s *Store) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	sh, r, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	return unlockCopy(sh, r), nil
}

// setState moves r's task to st keeping the per-state counts; the caller
// holds sh.mu.
func (s *Store) setState(sh *shard, r *record, st scheduler.State) {
	t := &r.task
	sh.counts[stateIndex(t.State)]--
	sh.counts[stateIndex(st)]++
	t.State = st
	if st.Terminal() {
		if t.UniqueKey != "" {
			s.uniqueMu.Lock()
			if s.unique[t.UniqueKey] == t.ID {
				delete(s.unique, t.UniqueKey)
			}
			s.uniqueMu.Unlock()
		}
		sh.dequeue(r)
		sh.finished = append(sh.finished, finished{id: t.ID, at: t.FinishedAt})
	}
}

// Start implements scheduler.Store.
func (s *Store) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	sh, r, err := s.lockLive(ctx, id)
	if err != nil {
		return nil, err
	}
	t := &r.task
	fresh := t.State.Waiting() && t.Attempt == p.Attempt
	takeover := p.Redelivered && (t.State == scheduler.StateRunning || t.State == scheduler.StatePending) &&
		t.Attempt > p.Attempt && r.driving == p.Attempt && (r.drivingID == "" || p.MessageID == "" || r.drivingID == p.MessageID)
	if !fresh && !takeover {
		err := fmt.Errorf("%w: %s is %s at attempt %d, message for attempt %d", scheduler.ErrStaleAttempt, id, t.State, t.Attempt, p.Attempt)
		sh.mu.Unlock()
		return nil, err
	}
	s.setState(sh, r, scheduler.StateRunning)
	r.driving, r.drivingID = p.Attempt, p.MessageID
	t.Attempt++
	t.StartedAt = p.Now
	t.WorkerID = p.WorkerID
	sh.dequeue(r)
	return unlockCopy(sh, r), nil
}

// Finish implements scheduler.Store.
func (s *Store) Finish(ctx context.Context, id string, p scheduler.FinishParams) (*scheduler.Task, error) {
	switch p.State {
	case scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateRetrying, scheduler.StateScheduled, scheduler.StatePending:
	default:
		return nil, &scheduler.ValidationError{Field: "state", Reason: fmt.Sprintf("cannot finish an attempt as %q", p.State)}
	}
	var result []byte
	if p.State == scheduler.StateSucceeded {
		result = append([]byte(nil), p.Result...)
	}
	sh, r, err := s.lockLive(ctx, id)
	if err != nil {
		return nil, err
	}
	t := &r.task
	if t.State != scheduler.StateRunning || t.Attempt != p.Attempt {
		err := fmt.Errorf("%w: %s is %s at attempt %d, finishing attempt %d", scheduler.ErrStaleAttempt, id, t.State, t.Attempt, p.Attempt)
		sh.mu.Unlock()
		return nil, err
	}
	if p.Error != "" {
		t.LastError = p.Error
	}
	t.MaxRetries += p.AddRetries
	switch p.State {
	case scheduler.StateSucceeded:
		t.Result = result
		t.FinishedAt = p.Now
	case scheduler.StateDead:
		t.FinishedAt = p.Now
	case scheduler.StateRetrying, scheduler.StateScheduled:
		t.RunAt = p.RunAt
		sh.enqueue(r)
	case scheduler.StatePending:
		if !p.RunAt.IsZero() {
			t.RunAt = p.RunAt
			sh.enqueue(r)
		}
	}
	s.setState(sh, r, p.State)
	return unlockCopy(sh, r), nil
}

// Cancel implements scheduler.Store.
func (s *Store) Cancel(ctx context.Context, id string, p scheduler.CancelParams) (*scheduler.Task, error) {
	sh, r, err := s.lockLive(ctx, id)
	if err != nil {
		return nil, err
	}
	t := &r.task
	if p.OnlyUnstarted && (t.Attempt != 0 || !(t.State == scheduler.StatePending || t.State == scheduler.StateScheduled)) {
		sh.mu.Unlock()
		return nil, fmt.Errorf("%w: %s already started", scheduler.ErrStaleAttempt, id)
	}
	if t.State == scheduler.StateRunning && t.WorkerID != "" {
		s.metaMu.Lock()
		s.cancels[t.WorkerID] = append(s.cancels[t.WorkerID], id)
		s.metaMu.Unlock()
	}
	t.LastError = p.Reason
	t.FinishedAt = p.Now
	s.setState(sh, r, scheduler.StateCanceled)
	return unlockCopy(sh, r), nil
}

// Retry implements scheduler.Store.
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*scheduler.Task, error) {
	sh, r, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	t := &r.task
	if t.State != scheduler.StateDead && t.State != scheduler.StateCanceled {
		st := t.State
		sh.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is %s", scheduler.ErrNotRetryable, id, st)
	}
	s.setState(sh, r, scheduler.StatePending)
	t.MaxRetries += t.Attempt
	t.FinishedAt = time.Time{}
	t.RunAt = now
	r.driving, r.drivingID = -1, "" // no message drives the task until its next start
	sh.enqueue(r)
	return unlockCopy(sh, r), nil
}

// Outbox implements scheduler.Store.
func (s *Store) Outbox(ctx context.Context, before time.Time, limit int) ([]*scheduler.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var due []*record
	s.lockAll()
	for i := range s.shards {
		for _, e := range s.shards[i].outbox {
			if e.live() && e.r.due.Before(before) {
				due = append(due, e.r)
			}
		}
	}
	slices.SortFunc(due, func(a, b *record) int { return a.due.Compare(b.due) })
	var out []*scheduler.Task
	for _, r := range due {
		if len(out) == limit {
			break
		}
		out = append(out, r.task.Clone())
	}
	s.unlockAll()
	return out, nil
}

// Published implements scheduler.Store.
func (s *Store) Published(ctx context.Context, msgs ...scheduler.Message) error {
	return s.eachWaiting(ctx, msgs, func(sh *shard, r *record) { sh.dequeue(r) })
}

// Republished implements scheduler.Store.
func (s *Store) Republished(ctx context.Context, due time.Time, msgs ...scheduler.Message) error {
	return s.eachWaiting(ctx, msgs, func(_ *shard, r *record) {
		if r.queued {
			r.due = due
		}
	})
}

// eachWaiting calls f, under its shard's lock, for the record of each
// message's task that still waits at the message's attempt.
func (s *Store) eachWaiting(ctx context.Context, msgs []scheduler.Message, f func(*shard, *record)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		sh := s.shard(m.TaskID)
		sh.mu.Lock()
		if r, ok := sh.tasks[m.TaskID]; ok && r.task.State.Waiting() && r.task.Attempt == m.Attempt {
			f(sh, r)
		}
		sh.mu.Unlock()
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
	s.lockAll()
	var match []*scheduler.Task
	for i := range s.shards {
		for id, r := range s.shards[i].tasks {
			t := &r.task
			if (f.State == "" || t.State == f.State) && (f.Type == "" || t.Type == f.Type) &&
				(f.Queue == "" || t.Queue == f.Queue) && (f.Cursor == "" || id < f.Cursor) {
				match = append(match, t)
			}
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
	s.unlockAll()
	return page, nil
}

// Counts implements scheduler.Store.
func (s *Store) Counts(ctx context.Context) (map[scheduler.State]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var counts [numStates]int64
	s.lockAll()
	for i := range s.shards {
		for j, n := range s.shards[i].counts {
			counts[j] += n
		}
	}
	s.unlockAll()
	out := make(map[scheduler.State]int64, len(counts))
	for i, n := range counts {
		if n != 0 {
			out[scheduler.States[i]] = n
		}
	}
	return out, nil
}

// Purge implements scheduler.Store.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	for k := range s.shards {
		if n >= limit {
			break
		}
		sh := &s.shards[k]
		sh.mu.Lock()
		i := 0
		for ; i < len(sh.finished) && n < limit; i++ {
			e := sh.finished[i]
			if !e.at.Before(before) {
				break
			}
			r, ok := sh.tasks[e.id]
			if !ok || !r.task.State.Terminal() || !r.task.FinishedAt.Equal(e.at) {
				continue // retried since, or already purged: a stale entry
			}
			delete(sh.tasks, e.id)
			sh.counts[stateIndex(r.task.State)]--
			n++
		}
		sh.finished = slices.Delete(sh.finished, 0, i)
		sh.mu.Unlock()
	}
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
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
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
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	delete(s.workers, id)
	delete(s.cancels, id)
	return nil
}

// Workers implements scheduler.Store.
func (s *Store) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
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
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
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
