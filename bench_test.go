package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// doneCounter is an Observer that records submit-to-done latencies and
// signals when want tasks succeeded.
type doneCounter struct {
	want int64
	n    atomic.Int64
	done chan struct{}
	mu   sync.Mutex
	lat  []time.Duration
}

func (d *doneCounter) Observe(e scheduler.Event) {
	if e.Kind != scheduler.EventSucceeded {
		return
	}
	d.mu.Lock()
	d.lat = append(d.lat, e.Time.Sub(e.Task.CreatedAt))
	d.mu.Unlock()
	if d.n.Add(1) == d.want {
		close(d.done)
	}
}

// report adds tasks/s and latency percentiles to b.
func (d *doneCounter) report(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(d.want)/elapsed.Seconds(), "tasks/s")
	d.mu.Lock()
	defer d.mu.Unlock()
	slices.Sort(d.lat)
	if len(d.lat) > 0 {
		b.ReportMetric(float64(d.lat[len(d.lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(d.lat[len(d.lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkEndToEndMemory measures submit-to-succeeded throughput on the
// memory backends with a no-op handler, for several worker concurrencies.
func BenchmarkEndToEndMemory(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			br, st := membroker.New(), memstore.New()
			defer br.Close()
			dc := &doneCounter{want: int64(b.N), done: make(chan struct{})}
			sched, err := scheduler.New(br, st, scheduler.WithObserver(dc), scheduler.WithRetention(0))
			if err != nil {
				b.Fatal(err)
			}
			defer sched.Close()
			w, err := sched.NewWorker(scheduler.WithConcurrency(conc))
			if err != nil {
				b.Fatal(err)
			}
			w.Handle("noop", func(context.Context, *scheduler.Task) error { return nil })
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			go func() { _ = w.Run(ctx); close(stopped) }()
			defer func() { cancel(); <-stopped }()

			payload := []byte(`{"n":1}`)
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := sched.Submit(ctx, "noop", payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			<-dc.done
			elapsed := time.Since(start)
			b.StopTimer()
			dc.report(b, elapsed)
		})
	}
}

// BenchmarkSubmitMemory measures Submit alone (store write and publish) on
// the memory backends, from parallel goroutines.
func BenchmarkSubmitMemory(b *testing.B) {
	br, st := membroker.New(), memstore.New()
	defer br.Close()
	sched, err := scheduler.New(br, st)
	if err != nil {
		b.Fatal(err)
	}
	defer sched.Close()
	payload := []byte(`{"n":1}`)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sched.Submit(context.Background(), "noop", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
