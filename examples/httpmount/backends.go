package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/broker/rabbitmq"
	memstore "github.com/dtsched/scheduler/storage/memory"
	redisstore "github.com/dtsched/scheduler/storage/redis"
)

// backends are the broker and store the example runs on.
type backends struct {
	broker  scheduler.Broker
	store   scheduler.Store
	closers []func() error
}

func (b *backends) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		_ = b.closers[i]()
	}
}

// connectTimeout bounds the first connection to Redis and RabbitMQ.
const connectTimeout = 10 * time.Second

// openBackends returns the memory backends, or Redis as the store and
// RabbitMQ as the broker when their flags are given. prefix namespaces
// the Redis keys and RabbitMQ queues.
func openBackends(ctx context.Context, redisAddr, amqpURL, prefix string, log *zap.Logger) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()

	if redisAddr == "" {
		b.store = memstore.New()
	} else {
		client := redis.NewClient(&redis.Options{Addr: redisAddr})
		b.closers = append(b.closers, client.Close)
		store, err := redisstore.New(client, redisstore.WithPrefix(prefix), redisstore.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		if err := store.Ping(ctx); err != nil {
			return nil, fmt.Errorf("-redis %s: %w", redisAddr, err)
		}
		b.store = store
	}

	if amqpURL == "" {
		mb := membroker.New()
		b.closers = append(b.closers, mb.Close)
		b.broker = mb
	} else {
		rb, err := rabbitmq.New(ctx, []string{amqpURL}, rabbitmq.WithPrefix(prefix), rabbitmq.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("-amqp: %w", err)
		}
		b.closers = append(b.closers, rb.Close)
		b.broker = rb
	}
	return b, nil
}
