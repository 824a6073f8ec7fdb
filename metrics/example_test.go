package metrics_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/metrics"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// Wire metrics into a Scheduler on the memory backends, run one task and
// read what a scrape would show.
func Example() {
	reg := prometheus.NewRegistry() // serve it with promhttp.HandlerFor(reg, ...)
	m, err := metrics.New(reg)
	if err != nil {
		panic(err)
	}
	broker := membroker.New()
	defer broker.Close()
	sched, err := scheduler.New(m.InstrumentBroker(broker), m.InstrumentStore(memstore.New()), scheduler.WithObserver(m))
	if err != nil {
		panic(err)
	}
	defer sched.Close()
	if err := m.Watch(sched); err != nil {
		panic(err)
	}

	ctx := context.Background()
	id, err := sched.Submit(ctx, "email.send", []byte(`{"to":"ada@example.com"}`), scheduler.WithPriority(7))
	if err != nil {
		panic(err)
	}
	printMetrics(reg, "scheduler_queue_depth", "scheduler_tasks_submitted_total")

	worker, err := sched.NewWorker()
	if err != nil {
		panic(err)
	}
	worker.Handle("email.send", func(context.Context, *scheduler.Task) error { return nil })
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- worker.Run(wctx) }()
	for t, _ := sched.Status(ctx, id); t == nil || t.State != scheduler.StateSucceeded; t, _ = sched.Status(ctx, id) {
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done
	printMetrics(reg, "scheduler_tasks_finished_total", "scheduler_queue_depth", "scheduler_tasks_in_flight")
	// Output:
	// scheduler_queue_depth{queue="default"} 1
	// scheduler_tasks_submitted_total{priority="7",queue="default",type="email.send"} 1
	// scheduler_tasks_finished_total{state="succeeded",type="email.send"} 1
	// scheduler_queue_depth{queue="default"} 0
	// scheduler_tasks_in_flight{type="email.send"} 0
}

// printMetrics prints the counter and gauge series of the named metrics in
// the order given.
func printMetrics(g prometheus.Gatherer, names ...string) {
	fams, err := g.Gather()
	if err != nil {
		panic(err)
	}
	for _, name := range names {
		i := slices.IndexFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == name })
		if i < 0 {
			continue
		}
		for _, s := range fams[i].Metric {
			var labels []string
			for _, l := range s.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := s.GetGauge().GetValue() + s.GetCounter().GetValue()
			if len(labels) > 0 {
				fmt.Printf("%s{%s} %g\n", name, strings.Join(labels, ","), v)
			} else {
				fmt.Printf("%s %g\n", name, v)
			}
		}
	}
}
