// Command httpmount serves the scheduler's HTTP API under /scheduler/ in a
// plain net/http mux, beside the application's own routes, with a worker
// running demo tasks in the same process.
//
//	go run ./examples/httpmount            # memory backends, http://127.0.0.1:8080/scheduler/
//	go run ./examples/httpmount -redis 127.0.0.1:6379 -amqp amqp://guest:guest@127.0.0.1:5672/
//	go run ./examples/httpmount -h         # the flags
//
// Then, for instance:
//
//	curl -s -X POST http://127.0.0.1:8080/scheduler/submit \
//	  -H 'Content-Type: application/json' \
//	  -d '{"type":"demo.sleep","payload":{"ms":200}}'
//
// Task types: demo.sleep {"ms": n} sleeps n ms and succeeds; demo.flaky
// {"fail_first": n} fails its first n attempts; demo.panic panics.
// docs/HTTP.md has the whole API with curl commands.
//
// SIGINT or SIGTERM shut it down gracefully: the server stops taking
// requests and finishes the ones in progress, the worker drains.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/httpapi"
	"github.com/dtsched/scheduler/internal/demo"
	"github.com/dtsched/scheduler/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "httpmount:", err)
		}
		os.Exit(2)
	}
}

// shutdownTimeout bounds the worker's drain.
const shutdownTimeout = 10 * time.Second

// prefix is where the API is mounted.
const prefix = "/scheduler"

// run serves until ctx ends, then shuts down gracefully. It prints the URL
// it serves on stdout and logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("httpmount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	redisAddr := fs.String("redis", "", "Redis address (host:port) for the task store; default: in memory")
	amqpURL := fs.String("amqp", "", "RabbitMQ URL (amqp://user:pass@host:5672/) for the broker; default: in memory")
	namespace := fs.String("namespace", "httpmount", "prefix of the Redis keys and RabbitMQ queues")
	token := fs.String("token", "", "require this bearer token on the API (also $SCHEDULER_TOKEN)")
	concurrency := fs.Int("concurrency", 4, "tasks the in-process worker runs at once")
	debug := fs.Bool("debug", false, "log at debug level: every request, every task start and finish")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *token == "" {
		*token = os.Getenv("SCHEDULER_TOKEN")
	}
	logger := demo.NewLogger(stderr, *debug, false)
	defer func() { _ = logger.Sync() }()

	// Metrics go to a registry of our own, with the Go runtime's and the
	// process's, served by the API at /metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, metrics.WithLogger(logger))
	if err != nil {
		return err
	}
	b, err := openBackends(ctx, *redisAddr, *amqpURL, *namespace, logger)
	if err != nil {
		return err
	}
	defer b.close()
	sched, err := scheduler.New(m.InstrumentBroker(b.broker), m.InstrumentStore(b.store),
		scheduler.WithLogger(logger),
		scheduler.WithObserver(m),
		scheduler.WithRetryPolicy(scheduler.Backoff(250*time.Millisecond, 5*time.Second)))
	if err != nil {
		return err
	}
	defer sched.Close()
	if err := m.Watch(sched); err != nil {
		return err
	}
	worker, err := sched.NewWorker(scheduler.WithConcurrency(*concurrency), scheduler.WithShutdownTimeout(shutdownTimeout))
	if err != nil {
		return err
	}
	demo.Register(worker)

	opts := []httpapi.Option{httpapi.WithGatherer(reg), httpapi.WithLogger(logger)}
	if *token != "" {
		opts = append(opts, httpapi.WithBearerToken(*token))
	}
	api, err := httpapi.New(sched, opts...)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "This is the application's own route. The scheduler API is at %s/ (try %s/healthz).\n", prefix, prefix)
	})
	mux.Handle(prefix+"/", http.StripPrefix(prefix, api))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := demo.NewServer(mux, logger)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		if err := worker.Run(ctx); err != nil {
			errs <- fmt.Errorf("worker: %w", err)
		}
		cancel()
	})
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve: %w", err)
		}
		cancel()
	})
	fmt.Fprintf(stdout, "serving the scheduler API at http://%s%s/\n", ln.Addr(), prefix)

	<-ctx.Done()
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), demo.ServerDrainTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		errs <- fmt.Errorf("shutdown: %w", err)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
