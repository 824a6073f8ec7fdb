package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asq is hibiken/asynq on the same Redis server, in its own database
// (asynq's key names are fixed, "asynq:*") and its own queue per run. A
// task counts as done when its handler returns (asynq then marks it done
// in Redis in the background: one round trip it is not charged for).
type asq struct {
	client *asynq.Client
	srv    *asynq.Server
	insp   *asynq.Inspector
	rdb    *redis.Client
	queue  string
}

func startAsynq(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	a := &asq{queue: "bench-" + hex.EncodeToString(b[:])}
	opt := asynq.RedisClientOpt{Addr: cfg.redisAddr, DB: cfg.asynqDB, PoolSize: 4 * cfg.producers}
	a.client = asynq.NewClient(opt)
	a.insp = asynq.NewInspector(opt)
	a.rdb = redis.NewClient(&redis.Options{Addr: cfg.redisAddr, DB: cfg.asynqDB})
	if !work {
		return a, nil
	}
	a.srv = asynq.NewServer(opt, asynq.Config{
		Concurrency: cfg.concurrency,
		Queues:      map[string]int{a.queue: 1},
		LogLevel:    asynq.ErrorLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(_ context.Context, t *asynq.Task) error {
		rec.add(submitTime(t.Payload()), time.Now())
		return nil
	})
	if err := a.srv.Start(mux); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *asq) submit(ctx context.Context, payload []byte) error {
	_, err := a.client.EnqueueContext(ctx, asynq.NewTask("noop", payload), asynq.Queue(a.queue))
	return err
}

func (a *asq) memory(ctx context.Context) (int64, error) {
	return memoryUsage(ctx, a.rdb, "asynq:{"+a.queue+"}:*")
}

func (a *asq) close() error {
	if a.srv != nil {
		a.srv.Shutdown()
	}
	_ = a.client.Close()
	var err error
	for range 50 { // the server's last Done calls may still be landing
		if err = a.insp.DeleteQueue(a.queue, true); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = a.insp.Close()
	if derr := deleteKeys(context.Background(), a.rdb, "asynq:{"+a.queue+"}:*"); derr != nil && err == nil {
		err = derr
	}
	_ = a.rdb.Close()
	if err != nil {
		return fmt.Errorf("asynq cleanup: %w", err)
	}
	return nil
}
