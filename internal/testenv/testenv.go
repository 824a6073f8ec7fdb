// Package testenv gives tests that need the real RabbitMQ and Redis their
// addresses, a namespace of their own, and the cleanup of that namespace.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// The environment variables that point the tests at real servers.
const (
	RedisEnv = "SCHEDULER_TEST_REDIS_ADDR"
	AMQPEnv  = "SCHEDULER_TEST_AMQP_URL"
)

// Redis returns the address of the real Redis, or skips the test, saying
// why, when it is not set.
func Redis(t testing.TB) string {
	t.Helper()
	return lookup(t, RedisEnv, "127.0.0.1:6379")
}

// AMQP returns the URL of the real RabbitMQ, or skips the test, saying
// why, when it is not set.
func AMQP(t testing.TB) string {
	t.Helper()
	return lookup(t, AMQPEnv, "amqp://guest:guest@127.0.0.1:5672/")
}

// Servers returns the addresses of the real Redis and RabbitMQ, or skips
// the test, saying why, when either is not set.
func Servers(t testing.TB) (redisAddr, amqpURL string) {
	t.Helper()
	return Redis(t), AMQP(t)
}

func lookup(t testing.TB, variable, example string) string {
	t.Helper()
	v := os.Getenv(variable)
	if v == "" {
		t.Skipf("%s is not set: skipping a test that needs the real server (e.g. %s=%s)", variable, variable, example)
	}
	return v
}

// Namespace returns a namespace (Redis key prefix and RabbitMQ name prefix)
// no other test uses, starting with prefix, and deletes what was made
// under it, for the given queues (default: "default"), when the test ends.
func Namespace(t testing.TB, redisAddr, amqpURL, prefix string, queues ...string) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	ns := prefix + "-" + hex.EncodeToString(r[:])
	t.Cleanup(func() {
		if err := DeleteNamespace(redisAddr, amqpURL, ns, queues...); err != nil {
			t.Logf("cleanup of namespace %s: %v", ns, err)
		}
	})
	return ns
}

// delayLevels is how many delay exchanges and wait queues the RabbitMQ
// broker may declare per namespace.
const delayLevels = 22

// DeleteNamespace removes the Redis keys of namespace ns and the RabbitMQ
// queues and exchanges the broker declares under it for the given queues
// (default: "default").
func DeleteNamespace(redisAddr, amqpURL, ns string, queues ...string) error {
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, `\{`+ns+`\}:*`, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	errs = append(errs, iter.Err())
	for len(keys) > 0 {
		n := min(len(keys), 500)
		errs = append(errs, rdb.Unlink(ctx, keys[:n]...).Err())
		keys = keys[n:]
	}

	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer conn.Close()
	var qs, xs []string
	for _, q := range queues {
		qs = append(qs, ns+":q:"+q, ns+":dead:"+q)
	}
	xs = append(xs, ns+":deliver")
	for k := range delayLevels {
		qs = append(qs, fmt.Sprintf("%s:wait:%d", ns, k))
		xs = append(xs, fmt.Sprintf("%s:delay:%d", ns, k))
	}
	ch, err := conn.Channel()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer ch.Close()
	// Deleting what does not exist succeeds, so one channel serves all.
	for _, q := range qs {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return errors.Join(append(errs, fmt.Errorf("delete queue %s: %w", q, err))...)
		}
	}
	for _, x := range xs {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			return errors.Join(append(errs, fmt.Errorf("delete exchange %s: %w", x, err))...)
		}
	}
	return errors.Join(errs...)
}
