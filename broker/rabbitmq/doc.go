// Package rabbitmq is a scheduler.Broker on RabbitMQ (3.8 or later) using
// github.com/rabbitmq/amqp091-go: durable priority queues, publisher
// confirms, delayed delivery without a plugin, dead-letter queues and
// reconnection.
//
// # Using it
//
//	b, err := rabbitmq.New(ctx,
//		[]string{"amqp://user:pass@rabbit-1:5672/", "amqp://user:pass@rabbit-2:5672/"},
//		rabbitmq.WithPrefix("billing"),
//		rabbitmq.WithLogger(logger),
//	)
//	if err != nil { ... }
//	defer b.Close()
//	sched, err := scheduler.New(b, store)
//
// New connects to the first URL that accepts. Every option is checked
// first: a bad one gives an *OptionError (errors.Is(err,
// scheduler.ErrInvalidOption)). Reconnects reports how often the broker had
// to recover a connection or consumer channel; log lines go to the zap
// logger of WithLogger.
//
// # Topology
//
// Everything is declared by the broker itself, idempotently, the first time
// a queue name is used (and again after every reconnection). With prefix P
// and a scheduler queue Q:
//
//	P:q:Q          work queue: durable classic queue, x-max-priority 10
//	               (WithMaxPriority); Publish sends to it through the
//	               default exchange, mandatory, persistent.
//	P:dead:Q       dead-letter queue of Q: durable, lazy, bounded by
//	               x-max-length 100,000 (oldest dropped first) and
//	               x-message-ttl 14 days (WithDeadLetterLimits).
//	P:deliver      topic exchange where delayed messages end; P:q:Q is
//	               bound to it with "*.*. … .*.Q" (22 stars).
//	P:delay:k      topic exchanges, k = 0..21, and
//	P:wait:k       wait queues: durable, lazy, x-message-ttl 2^k s,
//	               x-dead-letter-exchange P:delay:k-1 (P:deliver for k = 0).
//
// The delay cascade (P:delay:*, P:wait:*) is shared by all queues of the
// prefix and declared on the first delayed publish. Names use ':' as the
// separator, which neither prefixes nor queue names may contain, so two
// prefixes never collide. Several processes with the same prefix share the
// queues: that is how work spreads over machines.
//
// Message priority is a message property, kept by every hop (dead-lettering
// keeps properties), so a delayed message is ordered by its priority once it
// reaches its work queue. The wait queues are not priority queues: ordering
// them by priority would defeat their expiry order.
//
// # Delays
//
// A delay is rounded up to whole seconds (DelayPrecision) and written in
// binary into the routing key, one word per level, most significant first,
// followed by the queue name:
//
//	37 s for queue "mail" → "0.0. … 0.1.0.0.1.0.1.mail"  (32 + 4 + 1)
//
// The message is published to P:delay:21. The exchange of level k routes a
// message whose bit k is 1 into P:wait:k, and one whose bit k is 0 straight
// on to level k-1 (an exchange-to-exchange binding). A message waits in
// P:wait:k for exactly 2^k seconds, expires and is dead-lettered to level
// k-1 with its routing key unchanged; after level 0, P:deliver routes it to
// its work queue. The time waited is the sum of the bits, i.e. the delay.
//
// Per-message TTL only expires at the head of a queue, which is why a single
// wait queue would hold a short delay behind a long one. Here every message
// of a wait queue has the same TTL, so the head always expires first: a
// short delay is never held behind a long one, and no consumer process or
// plugin is involved. A message is never delivered before its rounded delay;
// it may come later by the dead-lettering latency of at most 22 hops
// (milliseconds each on a healthy node) and by how long the work queue's
// backlog is. One pass covers MaxCascadeDelay (about 48.5 days); a longer
// delay, however long (up to the largest time.Duration, which a run time
// centuries away saturates to), takes the longest pass and carries a
// not-before header (now plus the delay, rounded up to the millisecond), and
// the consumer that receives it early publishes it again for the time left
// instead of handing it out. Depth does not count delayed messages.
//
// Two limits come with dead-lettering. RabbitMQ moves an expired message
// from a classic queue to the next one without publisher confirms (at most
// once): a node that crashes at that moment, or a next queue that is
// unavailable in a cluster, can lose a delayed message. And a delayed
// message whose work queue was deleted while it waited is dropped at the
// end of the cascade (Publish declared the queue and could not know).
//
// # Publishing
//
// Publish declares what it needs, then publishes its messages on one of
// WithPublishChannels confirm-mode channels shared by all callers (one
// channel per call, so a call's messages of one priority arrive in the
// order given; calls take turns over the channels), keeping
// up to WithConfirmWindow messages per channel in flight (publisher confirms
// are pipelined, not one round trip per message), and returns nil only once
// RabbitMQ has confirmed all of them. Messages are mandatory: one that no
// queue takes comes back as basic.return and Publish fails with
// ErrUnroutable. Each publish has its own message-id, which ties a return to
// its publish, since amqp091-go hands returns and confirms over separate Go
// channels.
//
// If a channel or the connection dies before a confirm arrives, Publish sends
// the unconfirmed messages again on the next connection (waiting for it
// within ctx). A message may thus be enqueued twice; the scheduler's attempt
// fence makes the second one harmless.
//
// # Wire form
//
// A message is a persistent AMQP message (transient with
// WithTransientMessages, see there for the trade-off) with content type
// application/json, type "scheduler.message.v1", priority
// Message.Priority and the body
//
//	{"task_id":"0190f3…","attempt":2,"queue":"mail"}
//
// Decoding is strict: the content type and type must match, the body must
// have exactly these fields, a valid task ID, a non-negative attempt and the
// queue it was consumed from, and the priority must be 0..9. Anything else
// is never handed to the worker: it is copied to the queue's dead-letter
// queue with an x-scheduler-reason header, acked and logged, and the
// consumer goes on. If the copy cannot be published (say the dead-letter
// queue was deleted, so it comes back unroutable; the next try declares the
// queue again), the message is logged and returned to its queue with
// basic.nack after a backoff (WithReconnectBackoff, growing while such
// failures follow each other), without holding up the consumer meanwhile;
// the same goes for a message the consumer fails to delay again.
//
// # Consuming, prefetch and priority
//
// Consume opens a channel of its own with basic.qos(prefetch) and manual
// acknowledgements. RabbitMQ orders only the messages still waiting in the
// queue: up to prefetch messages already sent to a consumer are not
// reordered when a higher-priority message arrives. Keep prefetch near the
// worker's concurrency (the worker's free slots) when priority matters: a
// high-priority message then starts after at most prefetch lower ones. A
// large prefetch raises throughput and weakens priority.
//
// Ack is basic.ack; Requeue is basic.nack with requeue (the message goes
// back by priority, Redelivered true); DeadLetter publishes a copy to the
// dead-letter queue with the reason, waits for its confirm and then acks.
// Acks are coalesced per channel: an Ack that completes the run of settled
// deliveries from the oldest outstanding one goes out at once as a single
// basic.ack with multiple set for the whole run; an Ack behind an older
// unsettled delivery waits at most 2 ms for it, then goes out alone, and
// closing the consumer sends the waiting ones first. Requeues and the
// consumer's own acks are written before they are recorded, so a multiple
// ack never covers a delivery settled otherwise. An ack is not confirmed by
// AMQP: if the connection is cut right after Ack returned, the message may
// still come again, with Redelivered true.
//
// # Connections
//
// The broker holds two connections to the node: one publishes and
// declares, the other consumes and acknowledges (its connection_name ends
// in " (consume)"). A node under a memory or disk alarm stops reading from
// connections that publish; on a shared connection the workers'
// acknowledgements would wait too, and they could not drain the queues
// behind the alarm. The two live and die together.
//
// # Reconnection
//
// The broker watches its connections (NotifyClose) and, when either is
// lost (node restart, rabbitmqctl close_connection, a network cut noticed
// by heartbeats), closes the other and dials the next URL with exponential
// backoff (WithReconnectBackoff), declares again every queue used so far
// and the delay cascade, and opens new channels. Consumers subscribe again by
// themselves and keep their Deliveries channel; a delivery received on the
// old channel cannot be settled (ErrDeliveryLost) and RabbitMQ delivers the
// message again. A consumer channel closed by the server while the
// connection lives (consumer_timeout, a deleted queue) is reopened the same
// way. Publishing waits for the new connection.
//
// amqp091-go 1.12+ has its own recovery (Config.Recovery). The broker does
// not use it: it dials one URL only, at a fixed interval, gives up after a
// retry count, and reopens channels under the same Channel value, where
// delivery tags start again at 1, so settling a delivery from before the
// failure could ack a different message. The broker's channels are new
// values after every failure, so a stale delivery can never settle a fresh
// one.
//
// # consumer_timeout
//
// RabbitMQ 3.8.17+ closes a consumer's channel with 406 PRECONDITION_FAILED
// when a delivery stays unacknowledged longer than consumer_timeout (30
// minutes by default, checked about once a minute) and returns all of that
// channel's unacked messages to the queue. A task that runs longer than
// that is then redelivered while it still runs; its own ack fails with
// ErrDeliveryLost, and the attempt fence of the store stops the older
// worker's result from counting. For tasks longer than 30 minutes raise the
// limit in rabbitmq.conf, e.g. for two hours:
//
//	consumer_timeout = 7200000
//
// (RabbitMQ 3.12+ also accepts a per-queue x-consumer-timeout argument.) The
// broker notices the closed channel, subscribes again and counts it in
// Reconnects.
package rabbitmq
