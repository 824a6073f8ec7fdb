// Package metrics exports a Scheduler's activity as Prometheus metrics.
//
// # Wiring
//
// Metrics is a scheduler.Observer. Create it first, wrap the backends with
// it (optional, for error and reconnect counts), build the Scheduler with
// it as observer, then let it watch the Scheduler so that scrapes can read
// the backends:
//
//	reg := prometheus.NewRegistry()
//	m, err := metrics.New(reg)                       // registers on reg only
//	broker := m.InstrumentBroker(membroker.New())    // broker_errors_total, broker_reconnects_total
//	store := m.InstrumentStore(memstore.New())       // store_errors_total
//	sched, err := scheduler.New(broker, store, scheduler.WithObserver(m))
//	err = m.Watch(sched, "default", "mail")          // queue depth, tasks by state, workers
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// New registers on the Registerer it is given and never on the global
// default registry (pass prometheus.DefaultRegisterer to use that).
//
// # What is measured
//
// With the default namespace "scheduler":
//
//	scheduler_tasks_submitted_total{type,queue,priority}   counter   tasks submitted by this process
//	scheduler_tasks_finished_total{type,state}             counter   final states reached: succeeded, dead, canceled
//	scheduler_task_retries_total{type}                     counter   failed attempts retried, and retries by request
//	scheduler_tasks_dead_total{type}                       counter   tasks whose last attempt failed
//	scheduler_task_run_duration_seconds{type,outcome}      histogram handler run time; outcome succeeded, failed, snoozed, aborted
//	scheduler_task_queue_wait_seconds{queue}               histogram submission (or run-at) to start
//	scheduler_tasks_in_flight{type}                        gauge     attempts running in this process's workers
//	scheduler_queue_depth{queue}                           gauge     ready messages, from the broker
//	scheduler_tasks{state}                                 gauge     stored tasks per state, from the store
//	scheduler_workers                                      gauge     live workers, from their heartbeats
//	scheduler_worker_heartbeat_age_seconds{worker}         gauge     seconds since each live worker's last heartbeat
//	scheduler_broker_reconnects_total                      counter   broker reconnections (brokers that count them)
//	scheduler_broker_errors_total{operation}               counter   failed broker calls
//	scheduler_store_errors_total{operation}                counter   failed store calls
//	scheduler_periodic_ticks_total{schedule,outcome}       counter   ticks of periodic schedules: fired, taken, skipped, failed
//	scheduler_periodic_last_tick_timestamp_seconds{schedule} gauge   latest tick submitted by any node
//	scheduler_periodic_next_tick_timestamp_seconds{schedule} gauge   next tick
//
// Counters and histograms describe this process; sum them over processes
// in queries. The gauges read from the backends describe the cluster.
//
// # Scrapes read the backends
//
// Queue depth, tasks by state and workers are read when Prometheus
// scrapes, never on a task's path, concurrently and bounded by
// WithScrapeTimeout (5 s by default). A read that fails or times out is
// logged (WithLogger) and its metrics are left out of that scrape; the
// other metrics are still served.
//
// # Label cardinality
//
// Task types and queue names come from submitters. To keep a careless or
// hostile client from creating unbounded time series, at most
// WithLabelLimit (256) distinct types and as many queues become label
// values; the rest are counted under the label value "(other)".
package metrics
