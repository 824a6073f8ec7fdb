package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// raw is the hand-written baseline on the bare clients. Producer: SET the
// task's record as pending, publish a persistent message to a classic queue
// with x-max-priority 10 and wait for its confirm. Consumer (prefetch =
// concurrency, one goroutine per slot): SET running, SET succeeded, ack.
// Publishes share rawChannels confirm-mode channels; each caller waits for
// the confirm of its own message, so confirms are pipelined across callers.
type raw struct {
	cfg     *config
	noStore bool // RabbitMQ alone: no Redis writes at all
	rdb     *redis.Client
	conn    *amqp.Connection
	queue   string
	prefix  string
	pubs    []*rawPub
	next    atomic.Uint64
	cons    *amqp.Channel
	wg      sync.WaitGroup
	record  []byte
}

const rawChannels = 2

type rawPub struct {
	mu sync.Mutex
	ch *amqp.Channel
}

func startRaw(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
	return newRaw(ctx, cfg, rec, work, false)
}

// startRabbitMQOnly is the raw pipeline without its Redis writes: what
// RabbitMQ alone (persistent messages to a priority queue, confirms, acks)
// allows on the machine, the ceiling of any design with one message per
// task.
func startRabbitMQOnly(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
	return newRaw(ctx, cfg, rec, work, true)
}

func newRaw(ctx context.Context, cfg *config, rec *recorder, work, noStore bool) (instance, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	r := &raw{cfg: cfg, queue: "bench-raw-" + id, prefix: "{bench-raw-" + id + "}:t:", noStore: noStore}
	r.record = sampleRecord()
	r.rdb = redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: 4 * cfg.producers})
	conn, err := amqp.Dial(cfg.amqpURL)
	if err != nil {
		return nil, err
	}
	r.conn = conn
	admin, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.QueueDeclare(r.queue, true, false, false, false, amqp.Table{"x-max-priority": 10}); err != nil {
		return nil, err
	}
	for range rawChannels {
		ch, err := conn.Channel()
		if err != nil {
			return nil, err
		}
		if err := ch.Confirm(false); err != nil {
			return nil, err
		}
		r.pubs = append(r.pubs, &rawPub{ch: ch})
	}
	if work {
		ch, err := conn.Channel()
		if err != nil {
			return nil, err
		}
		if err := ch.Qos(cfg.concurrency, 0, false); err != nil {
			return nil, err
		}
		dels, err := ch.Consume(r.queue, "", false, false, false, false, nil)
		if err != nil {
			return nil, err
		}
		r.cons = ch
		for range cfg.concurrency {
			r.wg.Go(func() {
				for d := range dels {
					if r.noStore {
						rec.add(submitTime(d.Body), time.Now())
						_ = d.Ack(false)
						continue
					}
					key := r.prefix + d.MessageId
					at := time.Now()
					if err := r.rdb.Set(ctx, key, r.record, 0).Err(); err != nil {
						fmt.Println("raw: set running:", err)
					}
					if rec.breakdown {
						rec.started(submitTime(d.Body), at, time.Now())
					}
					if err := r.rdb.Set(ctx, key, r.record, 0).Err(); err != nil {
						fmt.Println("raw: set succeeded:", err)
					}
					rec.add(submitTime(d.Body), time.Now())
					_ = d.Ack(false)
				}
			})
		}
	}
	return r, nil
}

func (r *raw) submit(ctx context.Context, payload []byte) error {
	id := strconv.FormatUint(r.next.Add(1), 36)
	if !r.noStore {
		if err := r.rdb.Set(ctx, r.prefix+id, r.record, 0).Err(); err != nil {
			return err
		}
	}
	p := r.pubs[int(r.next.Load())%len(r.pubs)]
	p.mu.Lock()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", r.queue, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, Priority: 5, MessageId: id, ContentType: "application/json", Body: payload,
	})
	p.mu.Unlock()
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("raw: nacked")
	}
	return nil
}

func (r *raw) memory(ctx context.Context) (int64, error) {
	return memoryUsage(ctx, r.rdb, r.prefix+"*")
}

func (r *raw) close() error {
	if r.cons != nil {
		_ = r.cons.Close()
	}
	r.wg.Wait()
	ctx := context.Background()
	if ch, err := r.conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(r.queue, false, false, false)
		_ = ch.Close()
	}
	_ = r.conn.Close()
	err := deleteKeys(ctx, r.rdb, r.prefix+"*")
	_ = r.rdb.Close()
	return err
}

// sampleRecord is a task record of the size the Redis store writes for a
// small task (about 390 bytes of JSON).
func sampleRecord() []byte {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	return []byte(`{"id":"0192f1a4-8f6e-7c3a-9b1d-3e5f7a9c1b2d","type":"noop","queue":"default","priority":5,` +
		`"state":"pending","attempt":0,"max_retries":3,"run_at":"` + now + `","created_at":"` + now +
		`","started_at":"` + now + `","worker_id":"bench-host-1234-abcd","payload":{"t":1700000000000000000}}`)
}
