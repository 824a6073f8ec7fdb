package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/coalesce"
)

// createChunk is the most tasks one Create script writes; a larger batch
// is written by several scripts in a row.
const createChunk = 500

// purgeChunk is the most tasks one Purge script deletes, so that one
// script never blocks the server for long.
const purgeChunk = 1000

// purgeLook is the most finish log entries not yet due that one Purge
// script steps over looking for due ones.
const purgeLook = 256

// cancelRequestTTL bounds how long a cancel request waits for the next
// heartbeat of a worker that may have died.
const cancelRequestTTL = time.Hour

// maxKeyLen bounds worker IDs and claim keys.
const maxKeyLen = 256

// Store is a scheduler.Store on Redis. It is safe for concurrent use, also
// by many processes sharing one Redis namespace.
type Store struct {
	rdb      redis.UniversalClient
	ns       string // "{prefix}"
	replayMS string
	log      *zap.Logger
	nonce    string
	seq      atomic.Uint64

	transitions *coalesce.Group[transitionOp, transitionResult]
}

var _ scheduler.Store = (*Store)(nil)

// New returns a Store that keeps its data in client under the options'
// prefix. client may be a single-node, Sentinel (failover) or Cluster
// client. New does no I/O; use Ping to check the connection.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("redisstore: %w: nil client", scheduler.ErrInvalidOption)
	}
	o := options{prefix: DefaultPrefix, replay: DefaultReplayWindow, log: zap.NewNop()}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("redisstore: %w: nil option", scheduler.ErrInvalidOption)
		}
		if err := opt.apply(&o); err != nil {
			return nil, err
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("redisstore: operation nonce: %w", err)
	}
	s := &Store{
		rdb:      client,
		ns:       "{" + o.prefix + "}",
		replayMS: strconv.FormatInt(o.replay.Milliseconds(), 10),
		log:      o.log,
		nonce:    hex.EncodeToString(b[:]),
	}
	s.transitions = &coalesce.Group[transitionOp, transitionResult]{
		Run: s.transitionBatch, MaxBatch: maxTransitionBatch, MaxInFlight: maxTransitionsInFlight,
	}
	return s, nil
}

func (s *Store) taskKey(id string) string { return s.ns + ":t:" + id }

// token returns a new operation token: unique to this call among all
// processes (a random per-store nonce and a counter).
func (s *Store) token() string {
	return s.nonce + strconv.FormatUint(s.seq.Add(1), 36)
}

// run runs a changing script with a fresh operation token.
func (s *Store) run(ctx context.Context, sc *redis.Script, key string, args ...any) ([]any, error) {
	a := make([]any, 0, 3+len(args))
	a = append(a, s.ns, s.token(), s.replayMS)
	a = append(a, args...)
	return sc.Run(ctx, s.rdb, []string{key}, a...).Slice()
}

// read runs a read-only script.
func (s *Store) read(ctx context.Context, sc *redis.Script, key string, args ...any) ([]any, error) {
	a := make([]any, 0, 1+len(args))
	a = append(a, s.ns)
	a = append(a, args...)
	return sc.Run(ctx, s.rdb, []string{key}, a...).Slice()
}

// Create stores new tasks and puts them in the outbox. See
// scheduler.Store. A task whose ID is already stored is not written and
// gets a *scheduler.DuplicateError with ExistingID equal to its own ID.
func (s *Store) Create(ctx context.Context, tasks []*scheduler.Task) ([]error, error) {
	type prepared struct {
		t     *scheduler.Task
		js    []byte
		ukey  string // "" without a unique key
		combo string
		rkey  string
		ikey  string
		score string
	}
	prep := make([]prepared, len(tasks))
	var ids map[string]int
	if len(tasks) > 1 {
		ids = make(map[string]int, len(tasks))
	}
	for i, t := range tasks {
		if t == nil {
			return nil, fmt.Errorf("redisstore: task %d: %w", i, &scheduler.ValidationError{Field: "task", Reason: "nil task"})
		}
		if err := scheduler.ValidateNew(t); err != nil {
			return nil, fmt.Errorf("redisstore: task %d (%s): %w", i, t.ID, err)
		}
		if ids != nil {
			if j, dup := ids[t.ID]; dup {
				return nil, fmt.Errorf("redisstore: task %d (%s): %w", i, t.ID,
					&scheduler.ValidationError{Field: "id", Reason: fmt.Sprintf("same ID as task %d of the batch", j)})
			}
			ids[t.ID] = i
		}
		js, err := record(t, s.token())
		if err != nil {
			return nil, fmt.Errorf("redisstore: task %d (%s): %w", i, t.ID, err)
		}
		p := prepared{t: t, js: js, combo: t.Queue + ":" + t.Type, rkey: s.taskKey(t.ID), score: micros(t.RunAt)}
		p.ikey = s.ns + ":i:" + string(t.State) + ":" + p.combo
		if t.UniqueKey != "" {
			p.ukey = s.ns + ":u:" + stored(t.UniqueKey)
		}
		prep[i] = p
	}
	res := make([]error, len(tasks))
	for start := 0; start < len(prep); start += createChunk {
		chunk := prep[start:min(start+createChunk, len(prep))]
		keys := make([]string, 0, 2+3*len(chunk))
		keys = append(keys, s.ns+":c", s.ns+":o")
		args := make([]any, 0, 2+5*len(chunk))
		args = append(args, s.ns, len(chunk))
		for _, p := range chunk {
			keys = append(keys, p.rkey, p.ikey)
			hasUK := "0"
			if p.ukey != "" {
				keys = append(keys, p.ukey)
				hasUK = "1"
			}
			args = append(args, p.t.ID, p.js, p.score, p.combo, hasUK)
		}
		reply, err := createLua.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("redisstore: create: %w", err)
		}
		status, payload, err := statusReply(reply)
		if err != nil {
			return nil, err
		}
		s.replayed(status, "create", "")
		if payload == "" {
			continue // every task stored
		}
		holders := strings.Split(payload, ",")
		if len(holders) != len(chunk) {
			return nil, fmt.Errorf("%w: create returned %d results for %d tasks", errReplyShape, len(holders), len(chunk))
		}
		for i, h := range holders {
			if h != "" {
				res[start+i] = &scheduler.DuplicateError{UniqueKey: chunk[i].t.UniqueKey, ExistingID: h}
			}
		}
	}
	return res, nil
}

// Get returns the task with id, or scheduler.ErrTaskNotFound.
func (s *Store) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	key := s.taskKey(id)
	b, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrTaskNotFound)
	}
	if err != nil {
		if isWrongType(err) {
			return nil, &CorruptRecordError{Key: key, Err: err}
		}
		return nil, fmt.Errorf("redisstore: get %s: %w", id, err)
	}
	return s.decode(id, b)
}

// decode parses the record of id.
func (s *Store) decode(id string, b []byte) (*scheduler.Task, error) {
	t, err := parseRecord(id, b)
	if err != nil {
		return nil, &CorruptRecordError{Key: s.taskKey(id), Err: err}
	}
	return t, nil
}

// Start moves a task to running for the delivery of a message. See
// scheduler.Store.
func (s *Store) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, fmt.Errorf("redisstore: start: %w", err)
	}
	now, err := timeString(p.Now)
	if err != nil {
		return nil, fmt.Errorf("redisstore: start %s: %w", id, err)
	}
	return s.transition1(ctx, transitionOp{kind: "s", name: "start", id: id,
		args: []any{p.Attempt, flag(p.Redelivered), stored(p.WorkerID), now, stored(p.MessageID)}})
}

// Finish records the outcome of a running attempt. See scheduler.Store.
func (s *Store) Finish(ctx context.Context, id string, p scheduler.FinishParams) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, fmt.Errorf("redisstore: finish: %w", err)
	}
	switch p.State {
	case scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateRetrying, scheduler.StateScheduled, scheduler.StatePending:
	default:
		return nil, fmt.Errorf("redisstore: finish %s: %w", id,
			&scheduler.ValidationError{Field: "state", Reason: fmt.Sprintf("cannot finish an attempt as %q", p.State)})
	}
	if p.AddRetries < 0 || p.AddRetries > scheduler.MaxRetriesLimit {
		return nil, fmt.Errorf("redisstore: finish %s: %w", id,
			&scheduler.ValidationError{Field: "max_retries", Reason: fmt.Sprintf("cannot add %d retries", p.AddRetries)})
	}
	now, err := timeString(p.Now)
	if err != nil {
		return nil, fmt.Errorf("redisstore: finish %s: %w", id, err)
	}
	runAt := ""
	if p.State == scheduler.StateRetrying || p.State == scheduler.StateScheduled || p.State == scheduler.StatePending && !p.RunAt.IsZero() {
		if runAt, err = timeString(p.RunAt); err != nil {
			return nil, fmt.Errorf("redisstore: finish %s: %w", id, err)
		}
	}
	result := ""
	if p.State == scheduler.StateSucceeded {
		result = resultMember(p.Result)
	}
	return s.transition1(ctx, transitionOp{kind: "f", name: "finish", id: id,
		args: []any{p.Attempt, string(p.State), stored(p.Error), result, runAt, p.AddRetries, now, micros(p.Now), micros(p.RunAt)}})
}

// Cancel moves a task in any non-terminal state to canceled. See
// scheduler.Store. A running task's worker receives its ID from its next
// Heartbeat; the request waits for at most an hour.
func (s *Store) Cancel(ctx context.Context, id string, p scheduler.CancelParams) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, fmt.Errorf("redisstore: cancel: %w", err)
	}
	now, err := timeString(p.Now)
	if err != nil {
		return nil, fmt.Errorf("redisstore: cancel %s: %w", id, err)
	}
	return s.transition(ctx, cancelScript, "cancel", id, id, stored(p.Reason), flag(p.OnlyUnstarted), now, micros(p.Now),
		cancelRequestTTL.Milliseconds())
}

// Retry moves a dead or canceled task back to pending, due at now: now
// becomes its RunAt. See scheduler.Store.
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*scheduler.Task, error) {
	if err := scheduler.ValidateID(id); err != nil {
		return nil, fmt.Errorf("redisstore: retry: %w", err)
	}
	at, err := timeString(now)
	if err != nil {
		return nil, fmt.Errorf("redisstore: retry %s: %w", id, err)
	}
	return s.transition(ctx, retryScript, "retry", id, id, at, micros(now))
}

// transition1 runs op in a batch with the starts and finishes of
// concurrent callers: one script call carries them all.
func (s *Store) transition1(ctx context.Context, op transitionOp) (*scheduler.Task, error) {
	r, err := s.transitions.Do(ctx, op)
	if err != nil {
		if err == ctx.Err() { // ctx ended before its batch started
			return nil, fmt.Errorf("redisstore: %s %s: %w", op.name, op.id, err)
		}
		return nil, err
	}
	return r.t, r.err
}

// transitionOp is one Start or Finish waiting for its batch.
type transitionOp struct {
	kind string // "s" (start) or "f" (finish)
	name string // for errors and logs
	id   string
	args []any // after the ID, as transitionsBody takes them
}

// maxTransitionBatch bounds the starts and finishes of one script call.
const maxTransitionBatch = 128

// maxTransitionsInFlight bounds the concurrent batch calls of one store.
const maxTransitionsInFlight = 4

// transitionBatch runs a batch of starts and finishes in one script call:
// each is fenced on its own, as if it ran alone, and each gets its own
// result.
func (s *Store) transitionBatch(ctx context.Context, ops []transitionOp) ([]transitionResult, error) {
	n := 4 + len(ops)*11
	args := make([]any, 0, n)
	args = append(args, s.ns, s.token(), s.replayMS, len(ops))
	for _, op := range ops {
		args = append(args, op.kind, op.id)
		args = append(args, op.args...)
	}
	reply, err := transitionsScript.Run(ctx, s.rdb, []string{s.taskKey(ops[0].id)}, args...).Slice()
	if err != nil {
		if len(ops) == 1 {
			return nil, fmt.Errorf("redisstore: %s %s: %w", ops[0].name, ops[0].id, err)
		}
		return nil, fmt.Errorf("redisstore: %s %s (with %d other transitions): %w", ops[0].name, ops[0].id, len(ops)-1, err)
	}
	if len(reply) != 2*len(ops) {
		return nil, fmt.Errorf("%w: %d values for %d transitions", errReplyShape, len(reply), len(ops))
	}
	out := make([]transitionResult, len(ops))
	for i, op := range ops {
		out[i].t, out[i].err = s.decodeTransition(op.name, op.id, reply[2*i:2*i+2])
	}
	return out, nil
}

// transitionResult is the outcome of one transitionOp.
type transitionResult struct {
	t   *scheduler.Task
	err error
}

// decodeTransition decodes the {status, record} reply of one transition.
func (s *Store) decodeTransition(op, id string, reply []any) (*scheduler.Task, error) {
	status, rec, err := statusReply(reply)
	if err != nil {
		return nil, err
	}
	switch status {
	case "ok":
	case "replay":
		s.replayed(status, op, id)
		if rec == "" {
			return nil, fmt.Errorf("redisstore: task %s: %w", id, scheduler.ErrTaskNotFound)
		}
	default:
		return nil, s.statusError(status, id)
	}
	return s.decode(id, []byte(rec))
}

// transition runs the script of one task's state change and decodes the
// record it returns.
func (s *Store) transition(ctx context.Context, sc *redis.Script, op, id string, args ...any) (*scheduler.Task, error) {
	reply, err := s.run(ctx, sc, s.taskKey(id), args...)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %s %s: %w", op, id, err)
	}
	return s.decodeTransition(op, id, reply)
}

// Outbox returns up to limit tasks of the outbox that were due before
// `before`, earliest first.
func (s *Store) Outbox(ctx context.Context, before time.Time, limit int) ([]*scheduler.Task, error) {
	if limit <= 0 {
		return nil, nil
	}
	reply, err := s.read(ctx, outboxScript, s.ns+":o", micros(before), limit)
	if err != nil {
		return nil, fmt.Errorf("redisstore: outbox: %w", err)
	}
	return s.records(reply)
}

// records decodes a script reply of id, record pairs.
func (s *Store) records(reply []any) ([]*scheduler.Task, error) {
	if len(reply)%2 != 0 {
		return nil, fmt.Errorf("%w: odd record list", errReplyShape)
	}
	tasks := make([]*scheduler.Task, 0, len(reply)/2)
	for i := 0; i < len(reply); i += 2 {
		id, _ := reply[i].(string)
		rec, _ := reply[i+1].(string)
		if rec == "" {
			continue
		}
		t, err := s.decode(id, []byte(rec))
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// Published takes the tasks of confirmed messages out of the outbox, each
// only while it still waits at the message's attempt. See scheduler.Store.
func (s *Store) Published(ctx context.Context, msgs ...scheduler.Message) error {
	return s.published(ctx, "published", "", msgs)
}

// Republished moves the outbox entries of msgs' tasks, still waiting at
// the message's attempt, to be due at due. See scheduler.Store.
func (s *Store) Republished(ctx context.Context, due time.Time, msgs ...scheduler.Message) error {
	return s.published(ctx, "republished", micros(due), msgs)
}

// published runs publishedScript for msgs: score "" takes their tasks out
// of the outbox, a score moves their entries there.
func (s *Store) published(ctx context.Context, op, score string, msgs []scheduler.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	args := make([]any, 2, 2+2*len(msgs))
	args[0], args[1] = s.ns, score
	for _, m := range msgs {
		if err := scheduler.ValidateID(m.TaskID); err != nil {
			return fmt.Errorf("redisstore: %s: %w", op, err)
		}
		args = append(args, m.TaskID, m.Attempt)
	}
	if err := publishedScript.Run(ctx, s.rdb, []string{s.ns + ":o"}, args...).Err(); err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return nil
}

// List returns tasks matching f, newest (greatest ID) first, one page at a
// time. Page.Next is an opaque cursor.
func (s *Store) List(ctx context.Context, f scheduler.ListFilter) (scheduler.Page, error) {
	if f.State != "" && !f.State.Valid() {
		return scheduler.Page{}, fmt.Errorf("redisstore: list: %w",
			&scheduler.ValidationError{Field: "state", Reason: fmt.Sprintf("unknown state %q", f.State)})
	}
	cursor := ""
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err == nil {
			err = scheduler.ValidateID(string(b))
		}
		if err != nil {
			return scheduler.Page{}, fmt.Errorf("redisstore: list: %w",
				&scheduler.ValidationError{Field: "cursor", Reason: "malformed cursor"})
		}
		cursor = string(b)
	}
	n := f.PageSize()
	reply, err := s.read(ctx, listScript, s.ns+":c", string(f.State), f.Queue, f.Type, cursor, n)
	if err != nil {
		return scheduler.Page{}, fmt.Errorf("redisstore: list: %w", err)
	}
	if len(reply) == 0 {
		return scheduler.Page{}, fmt.Errorf("%w: empty list reply", errReplyShape)
	}
	more, _ := reply[0].(int64)
	tasks, err := s.records(reply[1:])
	if err != nil {
		return scheduler.Page{}, err
	}
	page := scheduler.Page{Tasks: tasks}
	if more == 1 && len(reply) > 1 {
		last, _ := reply[len(reply)-2].(string)
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	return page, nil
}

// Counts returns the number of stored tasks in each state that has any.
func (s *Store) Counts(ctx context.Context) (map[scheduler.State]int64, error) {
	reply, err := s.read(ctx, countsScript, s.ns+":c")
	if err != nil {
		return nil, fmt.Errorf("redisstore: counts: %w", err)
	}
	counts := make(map[scheduler.State]int64, len(reply)/2)
	for i := 0; i+1 < len(reply); i += 2 {
		st, _ := reply[i].(string)
		n, _ := reply[i+1].(int64)
		counts[scheduler.State(st)] = n
	}
	return counts, nil
}

// Purge deletes up to limit terminal tasks that finished before `before`,
// record and index entries in the same script, and returns how many it
// deleted. A corrupt record found on the way is deleted with every index
// entry of it, counted, and logged.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	total := 0
	for limit > 0 {
		chunk := min(limit, purgeChunk)
		reply, err := s.run(ctx, purgeScript, s.ns+":d", micros(before), chunk, purgeLook)
		if err != nil {
			return total, fmt.Errorf("redisstore: purge: %w", err)
		}
		if len(reply) < 2 {
			return total, fmt.Errorf("%w: short purge reply", errReplyShape)
		}
		status, _ := reply[0].(string)
		s.replayed(status, "purge", "")
		n, _ := reply[1].(int64)
		for _, id := range reply[2:] {
			s.log.Warn("purge deleted a corrupt task record", zap.String("key", s.taskKey(fmt.Sprint(id))))
		}
		total += int(n)
		if int(n) < chunk {
			break
		}
		limit -= chunk
	}
	return total, nil
}

// Heartbeat records that worker w is alive for ttl and returns the IDs of
// its running tasks canceled since its previous heartbeat.
func (s *Store) Heartbeat(ctx context.Context, w scheduler.WorkerInfo, ttl time.Duration) ([]string, error) {
	if err := validateName("worker id", w.ID); err != nil {
		return nil, err
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("redisstore: heartbeat: %w: ttl must be at least 1ms, got %s", scheduler.ErrInvalidOption, ttl)
	}
	js, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	reply, err := s.run(ctx, heartbeatScript, s.ns+":ws", stored(w.ID), js, ttl.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("redisstore: heartbeat: %w", err)
	}
	status, ids, err := statusReply(reply)
	if err != nil {
		return nil, err
	}
	s.replayed(status, "heartbeat", "")
	if ids == "" {
		return nil, nil
	}
	return strings.Split(ids, ","), nil
}

// RemoveWorker forgets a worker that stopped, with its pending cancel
// requests.
func (s *Store) RemoveWorker(ctx context.Context, id string) error {
	if err := validateName("worker id", id); err != nil {
		return err
	}
	if err := removeWorkerScript.Run(ctx, s.rdb, []string{s.ns + ":ws"}, s.ns, stored(id)).Err(); err != nil {
		return fmt.Errorf("redisstore: remove worker: %w", err)
	}
	return nil
}

// Workers returns the workers whose last heartbeat has not expired.
func (s *Store) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	reply, err := s.read(ctx, workersScript, s.ns+":ws")
	if err != nil {
		return nil, fmt.Errorf("redisstore: workers: %w", err)
	}
	out := make([]scheduler.WorkerInfo, 0, len(reply)/2)
	for i := 0; i+1 < len(reply); i += 2 {
		id, _ := reply[i].(string)
		js, _ := reply[i+1].(string)
		var w scheduler.WorkerInfo
		if err := json.Unmarshal([]byte(js), &w); err != nil {
			return nil, &CorruptRecordError{Key: s.ns + ":w:" + id, Err: err}
		}
		out = append(out, w)
	}
	return out, nil
}

// Claim atomically takes key for ttl and reports whether this caller got
// it. A call that go-redis resends after a lost reply still reports the
// claim it took.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := validateName("claim key", key); err != nil {
		return false, err
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("redisstore: claim: %w: ttl must be at least 1ms, got %s", scheduler.ErrInvalidOption, ttl)
	}
	n, err := claimLua.Run(ctx, s.rdb, []string{s.ns + ":claim:" + key}, s.token(), ttl.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim: %w", err)
	}
	return n == 1, nil
}

// Ping checks that Redis can be reached.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// replayed logs a call that go-redis sent again after its reply was lost
// and that had already applied: it answered from the first execution.
func (s *Store) replayed(status, op, id string) {
	if status == "replay" {
		s.log.Debug("retried call had already applied", zap.String("op", op), zap.String("task", id))
	}
}

// statusReply splits a {status, value} script reply.
func statusReply(reply []any) (string, string, error) {
	if len(reply) == 0 {
		return "", "", fmt.Errorf("%w: empty reply", errReplyShape)
	}
	status, ok := reply[0].(string)
	if !ok {
		return "", "", fmt.Errorf("%w: status %v", errReplyShape, reply[0])
	}
	if len(reply) < 2 {
		return status, "", nil
	}
	v, _ := reply[1].(string)
	return status, v, nil
}

func validateName(what, v string) error {
	if v == "" || len(v) > maxKeyLen {
		return fmt.Errorf("redisstore: %w: %s must be 1 to %d bytes", scheduler.ErrInvalidOption, what, maxKeyLen)
	}
	return nil
}

func isWrongType(err error) bool {
	return strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// micros is a time as a sorted-set score: microseconds since the Unix
// epoch, exact in a float64.
func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// timeString is t as a record holds it (RFC 3339 with
// nanoseconds), or "" for the zero time (the record omits zero times).
func timeString(t time.Time) (string, error) {
	if t.IsZero() {
		return "", nil
	}
	var buf [40]byte
	b, err := appendTime(buf[:0], t)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// stored returns s as it reads back from a JSON record: JSON encoding
// replaces invalid UTF-8. Strings that scripts write into a record are
// passed in this form, so records stay valid UTF-8, and key names built
// from a string that scripts read out of a record (unique keys, worker IDs)
// use it on both sides.
func stored(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s) // a string always encodes
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// resultMember encodes a result as the record holds it: the member
// `,"rs":<value>` when it is a JSON value the record can embed, else
// `,"rs64":"<base64>"`.
func resultMember(result []byte) string {
	return string(appendBytesMember(nil, "rs", result))
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
