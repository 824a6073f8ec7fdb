// Package redisstore is a scheduler.Store on Redis, for task state shared
// by processes on many machines. It works with a single server, Sentinel
// (failover) or Cluster, through any redis.UniversalClient.
//
// # Using it
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
//	store, err := redisstore.New(rdb, redisstore.WithPrefix("billing"))
//	if err != nil { ... }
//	sched, err := scheduler.New(broker, store)
//
// New does no I/O; Store.Ping checks the connection. The store does not
// own the client: close it yourself after the scheduler stopped. How long
// finished tasks are kept is a Scheduler setting (scheduler.WithRetention):
// workers call Purge with now minus the retention. The store never gives a
// record a Redis TTL, because an expiring record would leave its index
// entries behind.
//
// Run Redis with maxmemory-policy noeviction (an evicted record or index
// breaks the agreement between them) and AOF persistence if tasks must
// survive a server restart.
//
// # Keys
//
// Every key starts with "{prefix}:" (WithPrefix, default "sched"). The
// braces make the prefix a Redis Cluster hash tag: the whole namespace is
// one hash slot, so each Lua script can touch all the keys it needs.
//
//	{p}:t:<id>                     string  the task record (JSON, see below)
//	{p}:i:<state>:<queue>:<type>   zset    listing index: IDs of the tasks in that state, queue
//	                                       and type, all scored 0 so they sort by ID (UUIDv7:
//	                                       creation order)
//	{p}:c                          set     "<queue>:<type>" pairs that have listing indexes
//	{p}:o                          zset    outbox: IDs scored by when they are due (µs)
//	{p}:d                          list    finish log, for Purge: "<finish time, µs>:<id>" in the
//	                                       order the tasks finished
//	{p}:r                          hash    ID -> number of finish log entries a Retry left behind
//	{p}:u:<unique key>             string  ID of the unfinished task holding the key; no TTL,
//	                                       deleted when that task finishes
//	{p}:w:<worker id>              string  the worker's last WorkerInfo (JSON), TTL of its heartbeat
//	{p}:ws                         zset    worker IDs scored by when their heartbeat expires (ms)
//	{p}:wc:<worker id>             set     IDs of the worker's running tasks canceled since its last
//	                                       heartbeat; expires after an hour without heartbeat
//	{p}:claim:<key>                string  Claim: a token, TTL of the claim
//	{p}:op:<token>                 string  replay marker of one changing call, TTL of the replay
//	                                       window (WithReplayWindow)
//
// Unique keys and worker IDs appear in key names as they read back from
// JSON (invalid UTF-8 replaced by U+FFFD).
//
// A task record is a JSON object with short member names. A member is
// left out when it holds what a reader assumes in its absence: the ID (the
// key names it), run_at when it equals created_at, empty strings, zero
// times, a zero msg_attempt. Times are RFC 3339 with nanoseconds, as
// time.Time marshals them, so a task reads back exactly as it was stored.
//
//	t   type            q   queue          p   priority     s   state
//	a   attempt         m   max_retries    to  timeout (Go duration)
//	r   run_at          c   created_at     b   started_at   f   finished_at
//	e   last_error      w   worker_id      u   unique_key
//	sc  schedule        tk  tick
//	ma  attempt of the message driving the task (see Store.Start)
//	mi  ID of that message (Delivery.ID), when its broker gives one, while
//	    the task runs or is handed back
//	ct  token of the Create call that wrote the record, until the first transition
//	pl  payload (JSON, embedded)           pl64  payload (any bytes, base64)
//	rs  result (JSON, embedded)            rs64  result (any bytes, base64)
//
// For a finished task with a small payload that is about 230 bytes. The
// payload and result come last. Everything before them holds only strings
// and integers, so a script finds where they start without decoding them,
// decodes only the small head, and never rewrites a payload or result.
//
// # Atomic, fenced transitions
//
// Create, Start, Finish, Cancel, Retry and Purge are one Lua script each
// (Create one per batch of up to 500 tasks): one round trip that checks the
// fence of scheduler.Store (state and attempt) and changes the record and
// every index entry together, or changes nothing. Concurrent Start and
// Finish calls of one Store (a worker's slots) share script calls: a call
// that finds fewer than four batches running runs at once; calls arriving
// meanwhile wait for the next batch (up to 128 transitions), which one
// script runs in order, fencing each transition on its own exactly as if it
// ran alone. A lone call never waits. Listing indexes,
// Counts, the outbox, the finish log and unique keys therefore always
// agree with the records. Purge deletes a record and its index entries in
// the same script, so retention leaves no orphans behind. It walks the
// finish log from the oldest entry and steps over up to 256 entries not
// yet due to reach due ones behind them (finish times come from the
// callers' clocks, so the log is in finish order only as far as those
// clocks agree): a worker whose clock runs ahead can hold up purging by
// as much as its lead.
//
// go-redis resends a command whose reply it did not receive (MaxRetries), so
// a script can run twice although the caller sent it once. Every changing
// script takes a token unique to its call. Create writes it into each new
// record (member ct): a resent Create finds its records byte for byte and
// counts them as stored, while a Create of the same task by any other call
// is a duplicate. (Should a task start before the resent call arrives, which
// takes a retry span longer than the outbox's republish delay, that call
// reports the task as a duplicate of itself.) The other changing scripts
// record the token, with a TTL of the replay window, in the same script; a
// second run finds it and answers as the first did (Heartbeat and Purge with
// the saved reply, transitions with the task as it is now) without applying
// anything again. A batch of starts and finishes records the outcome of each
// under its one token: a resent batch answers the transitions that applied
// with the task as it is now and refuses the others as the first run did. A
// single Cancel or Retry refused by its fence records nothing, so its resend
// is refused the same way. Claim stores its caller's token as the claim, so
// a resent Claim still wins. The replay window must cover the client's whole
// retry span.
//
// # Errors
//
// Every method taking a task ID rejects a malformed one
// (scheduler.ValidateID) before building a key. Create validates the whole
// batch (scheduler.ValidateNew) before writing anything. A record that is
// not a task this store can read (written by something else) gives a
// *CorruptRecordError naming the key; Purge deletes such a record with its
// index entries when it is due and logs it. The fence errors are those of
// the scheduler package (ErrTaskNotFound, ErrTaskFinished, ErrStaleAttempt,
// ErrNotRetryable, *DuplicateError); connection errors are returned
// wrapped, never mapped to ErrTaskNotFound.
package redisstore
