package rabbitmq

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// Benchmarks run against the server of SCHEDULER_TEST_AMQP_URL and report
// msgs/s. Each broker benchmark has a raw amqp091-go baseline doing the same
// work (a priority queue with x-max-priority 10, persistent messages,
// pipelined publisher confirms with a window of 256, manual acks) in the
// same run:
//
//	SCHEDULER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ \
//	  go test -run '^$' -bench . -benchtime 20000x -count 3 ./broker/rabbitmq/
//
// BenchmarkPaired alternates the two in small chunks within one benchmark
// and reports their ratio: on a shared, busy machine that ratio is far
// steadier than comparing separate sub-benchmarks run seconds apart.

const (
	benchPublishers = 256 // concurrent Publish calls, like many Submit calls
	benchWindow     = 256 // raw baseline's confirm window
	benchPrefetch   = 64
)

func benchMsg(i int) scheduler.Message {
	return scheduler.Message{TaskID: fmt.Sprintf("task-%d", i), Attempt: 0, Queue: "bench", Priority: scheduler.Priority(i % 10)}
}

// publishParallel publishes n messages from benchPublishers goroutines, one
// message per Publish call.
func publishParallel(b *testing.B, br *Broker, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	for range benchPublishers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := br.Publish(ctx, benchMsg(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func report(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkPublish(b *testing.B) {
	url := amqpURL(b)
	b.Run("broker", func(b *testing.B) {
		br := newTestBroker(b, url)
		require.NoError(b, br.Publish(context.Background(), benchMsg(0))) // declare
		b.ResetTimer()
		start := time.Now()
		publishParallel(b, br, b.N)
		report(b, start)
	})
	b.Run("broker-batch100", func(b *testing.B) {
		br := newTestBroker(b, url)
		require.NoError(b, br.Publish(context.Background(), benchMsg(0)))
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i += 100 {
			batch := make([]scheduler.Message, 0, 100)
			for j := i; j < min(i+100, b.N); j++ {
				batch = append(batch, benchMsg(j))
			}
			require.NoError(b, br.Publish(context.Background(), batch...))
		}
		report(b, start)
	})
	b.Run("raw", func(b *testing.B) {
		r := newRaw(b, url)
		b.ResetTimer()
		start := time.Now()
		r.publish(b, b.N)
		report(b, start)
	})
}

func BenchmarkPublishConsume(b *testing.B) {
	url := amqpURL(b)
	b.Run("broker", func(b *testing.B) {
		br := newTestBroker(b, url)
		ctx := context.Background()
		c, err := br.Consume(ctx, "bench", benchPrefetch)
		require.NoError(b, err)
		defer c.Close()
		b.ResetTimer()
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 0; n < b.N; n++ {
				d, ok := <-c.Deliveries()
				if !ok {
					b.Error("deliveries closed")
					return
				}
				if err := d.Ack(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		publishParallel(b, br, b.N)
		<-done
		report(b, start)
	})
	b.Run("raw", func(b *testing.B) {
		r := newRaw(b, url)
		dels, err := r.cch.Consume(r.queue, "", false, false, false, false, nil)
		require.NoError(b, err)
		b.ResetTimer()
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 0; n < b.N; n++ {
				d := <-dels
				if err := d.Ack(false); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		r.publish(b, b.N)
		<-done
		report(b, start)
	})
}

// raw is the amqp091-go baseline: one publishing channel with pipelined
// confirms and one consuming channel, on a priority queue.
type raw struct {
	conn     *amqp.Connection
	pch, cch *amqp.Channel
	queue    string
	confirms chan amqp.Confirmation
}

func newRaw(b *testing.B, url string) *raw {
	conn, err := amqp.Dial(url)
	require.NoError(b, err)
	r := &raw{conn: conn, queue: uniquePrefix(b) + ":raw"}
	b.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(r.queue, false, false, false)
		}
		_ = conn.Close()
	})
	r.pch, err = conn.Channel()
	require.NoError(b, err)
	r.cch, err = conn.Channel()
	require.NoError(b, err)
	_, err = r.pch.QueueDeclare(r.queue, true, false, false, false, amqp.Table{"x-max-priority": 10})
	require.NoError(b, err)
	require.NoError(b, r.pch.Confirm(false))
	r.confirms = r.pch.NotifyPublish(make(chan amqp.Confirmation, benchWindow))
	require.NoError(b, r.cch.Qos(benchPrefetch, 0, false))
	return r
}

// publish sends n messages keeping up to benchWindow unconfirmed.
func (r *raw) publish(b *testing.B, n int) {
	outstanding := 0
	for i := range n {
		if outstanding == benchWindow {
			c := <-r.confirms
			require.True(b, c.Ack)
			outstanding--
		}
		m := benchMsg(i)
		err := r.pch.Publish("", r.queue, true, false, amqp.Publishing{
			ContentType: contentType, Type: messageType, DeliveryMode: amqp.Persistent,
			Priority: uint8(m.Priority), MessageId: m.TaskID, Body: encodeBody(m),
		})
		require.NoError(b, err)
		outstanding++
	}
	for ; outstanding > 0; outstanding-- {
		c := <-r.confirms
		require.True(b, c.Ack)
	}
}

// pairChunk is how many messages each side moves before the other takes
// its turn in the paired benchmarks.
const pairChunk = 1000

// benchPaired alternates the broker and the raw baseline in chunks of
// pairChunk messages on the same server, so that load from elsewhere hits
// both alike, and reports both rates and their ratio.
func benchPaired(b *testing.B, consume bool) {
	url := amqpURL(b)
	br := newTestBroker(b, url)
	r := newRaw(b, url)
	ctx := context.Background()
	require.NoError(b, br.Publish(ctx, benchMsg(0)))
	brokerAcked := make(chan struct{}, pairChunk)
	rawAcked := make(chan struct{}, pairChunk)
	var wg sync.WaitGroup
	if consume {
		c, err := br.Consume(ctx, "bench", benchPrefetch)
		require.NoError(b, err)
		dels, err := r.cch.Consume(r.queue, "", false, false, false, false, nil)
		require.NoError(b, err)
		require.NoError(b, (<-c.Deliveries()).Ack(ctx)) // the declaring message
		defer func() {
			_ = c.Close()
			_ = r.cch.Close()
			wg.Wait()
		}()
		wg.Go(func() {
			for d := range c.Deliveries() {
				if err := d.Ack(ctx); err != nil {
					b.Error(err)
				}
				brokerAcked <- struct{}{}
			}
		})
		wg.Go(func() {
			for d := range dels {
				if err := d.Ack(false); err != nil {
					b.Error(err)
				}
				rawAcked <- struct{}{}
			}
		})
	}
	wait := func(acked chan struct{}, n int) {
		for range n {
			<-acked
		}
	}
	var tBroker, tRaw time.Duration
	runBroker := func(n int) {
		start := time.Now()
		publishParallel(b, br, n)
		if consume {
			wait(brokerAcked, n)
		}
		tBroker += time.Since(start)
	}
	runRaw := func(n int) {
		start := time.Now()
		r.publish(b, n)
		if consume {
			wait(rawAcked, n)
		}
		tRaw += time.Since(start)
	}
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; done, turn = done+pairChunk, turn+1 {
		n := min(pairChunk, b.N-done)
		if turn%2 == 0 {
			runBroker(n)
			runRaw(n)
		} else {
			runRaw(n)
			runBroker(n)
		}
	}
	b.StopTimer()
	brokerRate := float64(b.N) / tBroker.Seconds()
	rawRate := float64(b.N) / tRaw.Seconds()
	b.ReportMetric(brokerRate, "broker-msgs/s")
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(brokerRate/rawRate, "ratio")
}

// BenchmarkPaired runs the broker and the raw baseline alternately; its
// ratio is the figure to compare with the 0.8 target.
func BenchmarkPaired(b *testing.B) {
	b.Run("publish", func(b *testing.B) { benchPaired(b, false) })
	b.Run("publish-consume", func(b *testing.B) { benchPaired(b, true) })
}
