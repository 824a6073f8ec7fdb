package main

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// backends are the broker and store the example runs on.
type backends struct {
	broker scheduler.Broker
	store  scheduler.Store
	close  func()
}

// errNotInBuild is returned for a backend flag this build cannot honour.
var errNotInBuild = errors.New("not available in this build")

// openBackends returns the memory backends, or the real ones when their
// flags are given.
func openBackends(_ context.Context, redisAddr, amqpURL string, _ *zap.Logger) (*backends, error) {
	if redisAddr != "" {
		return nil, fmt.Errorf("-redis: the Redis store is %w", errNotInBuild)
	}
	if amqpURL != "" {
		return nil, fmt.Errorf("-amqp: the RabbitMQ broker is %w", errNotInBuild)
	}
	b := membroker.New()
	return &backends{broker: b, store: memstore.New(), close: func() { _ = b.Close() }}, nil
}
