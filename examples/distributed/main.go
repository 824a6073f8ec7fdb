// Command distributed runs the scheduler on RabbitMQ and Redis as a
// cluster node: the HTTP API, a worker, or both. Start it on as many
// machines as you like against one RabbitMQ and one Redis; the workers
// share the work, and a worker that dies loses nothing.
//
//	go run ./examples/distributed -role api                          # HTTP API on 127.0.0.1:8080
//	go run ./examples/distributed -role worker -addr 127.0.0.1:8081  # a worker, its metrics on :8081
//	go run ./examples/distributed -h                                 # every flag and its variable
//
// Task types: demo.sleep {"ms": n} sleeps n ms and succeeds; demo.flaky
// {"fail_first": n} fails its first n attempts; demo.panic panics. The
// README has a walk-through with one API node and two workers.
//
// SIGINT or SIGTERM start a graceful drain: the API finishes the requests
// in progress, the worker takes no new task and waits up to
// -shutdown-timeout for the running ones before handing them back. A
// second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/broker/rabbitmq"
	"github.com/dtsched/scheduler/httpapi"
	"github.com/dtsched/scheduler/internal/demo"
	"github.com/dtsched/scheduler/internal/failpoint"
	"github.com/dtsched/scheduler/metrics"
	redisstore "github.com/dtsched/scheduler/storage/redis"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "distributed: draining; signal again to exit at once")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "distributed: exiting at once")
		os.Exit(1)
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	cancel()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, scheduler.ErrShutdownTimeout):
		// Running tasks were handed back for another worker: nothing is
		// lost, but say so in the exit status.
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(2)
	}
}

// connectTimeout bounds the first connection to the backends.
const connectTimeout = 15 * time.Second

// failpointExit is the exit status of a process stopped by -failpoint.
const failpointExit = 3

// run is the whole program: it runs until ctx ends, then drains. It prints
// the API's URL on stdout once it listens, and logs JSON to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := demo.NewLogger(stderr, cfg.debug, true).With(zap.String("node", cfg.id), zap.String("role", cfg.role))
	defer func() { _ = logger.Sync() }()
	if cfg.failpoint != "" {
		failpoint.Enable(cfg.failpoint, func() {
			logger.Warn("failpoint reached: exiting", zap.String("failpoint", cfg.failpoint))
			_ = logger.Sync()
			os.Exit(failpointExit)
		})
		defer failpoint.Disable(cfg.failpoint)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, metrics.WithLogger(logger))
	if err != nil {
		return err
	}
	broker, store, closeBackends, err := openBackends(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeBackends()
	sched, err := scheduler.New(m.InstrumentBroker(broker), m.InstrumentStore(store),
		scheduler.WithLogger(logger),
		scheduler.WithObserver(m),
		scheduler.WithSweepInterval(cfg.sweep),
		scheduler.WithRetryPolicy(scheduler.Backoff(cfg.retryBase, cfg.retryMax)))
	if err != nil {
		return err
	}
	defer sched.Close()
	if err := m.Watch(sched, cfg.queues...); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if cfg.works() {
		worker, err := newWorker(sched, cfg)
		if err != nil {
			return err
		}
		if worker.closeLog != nil {
			defer worker.closeLog()
		}
		wg.Go(func() {
			if err := worker.Run(ctx); err != nil {
				errs <- fmt.Errorf("worker: %w", err)
			}
			cancel()
		})
	}
	if cfg.serves() {
		srv, ln, err := newServer(sched, reg, cfg, logger)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Go(func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve: %w", err)
			}
			cancel()
		})
		wg.Go(func() {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), demo.ServerDrainTimeout)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil {
				errs <- fmt.Errorf("http shutdown: %w", err)
			}
		})
		fmt.Fprintf(stdout, "serving the scheduler API at http://%s/\n", ln.Addr())
	}
	logger.Info("node started", zap.Strings("amqp", redactURLs(cfg.amqp)), zap.String("namespace", cfg.namespace))
	<-ctx.Done()
	logger.Info("draining")
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	logger.Info("drained")
	return nil
}

// worker is the node's worker with the exec log it writes, if any.
type worker struct {
	*scheduler.Worker
	closeLog func()
}

// newWorker returns a worker running the demo task types.
func newWorker(sched *scheduler.Scheduler, cfg *config) (*worker, error) {
	w, err := sched.NewWorker(
		scheduler.WithWorkerID(cfg.id),
		scheduler.WithConcurrency(cfg.concurrency),
		scheduler.WithQueues(cfg.queues...),
		scheduler.WithShutdownTimeout(cfg.shutdownTimeout),
		scheduler.WithHeartbeatInterval(cfg.heartbeat))
	if err != nil {
		return nil, err
	}
	out := &worker{Worker: w}
	if cfg.execLog == "" {
		demo.Register(w)
		return out, nil
	}
	l, err := openExecLog(cfg.execLog, cfg.id)
	if err != nil {
		return nil, err
	}
	out.closeLog = func() { _ = l.Close() }
	for typ, h := range demo.Handlers() {
		w.Handle(typ, l.wrap(h))
	}
	return out, nil
}

// newServer returns the HTTP API, with /metrics, and its listener.
func newServer(sched *scheduler.Scheduler, reg *prometheus.Registry, cfg *config, logger *zap.Logger) (*http.Server, net.Listener, error) {
	opts := []httpapi.Option{httpapi.WithGatherer(reg), httpapi.WithLogger(logger)}
	if cfg.token != "" {
		opts = append(opts, httpapi.WithBearerToken(cfg.token))
	}
	api, err := httpapi.New(sched, opts...)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("-addr: %w", err)
	}
	return demo.NewServer(api, logger), ln, nil
}

// openBackends connects to RabbitMQ and Redis. The connections carry the
// node's ID as their name (RabbitMQ's connection_name, Redis's CLIENT
// SETNAME), so an operator can tell the nodes apart.
func openBackends(ctx context.Context, cfg *config, logger *zap.Logger) (scheduler.Broker, scheduler.Store, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	opts, err := redisOptions(cfg.redis)
	if err != nil {
		return nil, nil, nil, err
	}
	opts.ClientName = "scheduler-" + cfg.id
	client := redis.NewClient(opts)
	store, err := redisstore.New(client, redisstore.WithPrefix(cfg.namespace), redisstore.WithLogger(logger))
	if err == nil {
		err = store.Ping(ctx)
	}
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, fmt.Errorf("-redis %s: %w", opts.Addr, err)
	}
	broker, err := rabbitmq.New(ctx, cfg.amqp,
		rabbitmq.WithPrefix(cfg.namespace),
		rabbitmq.WithConnectionName("scheduler-"+cfg.id),
		rabbitmq.WithHeartbeat(cfg.amqpHeartbeat.Round(time.Second)),
		rabbitmq.WithLogger(logger))
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, fmt.Errorf("-amqp: %w", err)
	}
	closeAll := func() {
		if err := broker.Close(); err != nil {
			logger.Warn("closing RabbitMQ", zap.Error(err))
		}
		if err := client.Close(); err != nil {
			logger.Warn("closing Redis", zap.Error(err))
		}
	}
	return broker, store, closeAll, nil
}

// redisOptions reads -redis: a redis:// or rediss:// URL, or host:port.
func redisOptions(s string) (*redis.Options, error) {
	if strings.Contains(s, "://") {
		opts, err := redis.ParseURL(s)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		return opts, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return nil, fmt.Errorf("-redis: want host:port or a redis:// URL: %w", err)
	}
	return &redis.Options{Addr: s}, nil
}

// redactURLs returns the URLs without their passwords, for the log.
func redactURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, s := range urls {
		if u, err := url.Parse(s); err == nil {
			s = u.Redacted()
		}
		out[i] = s
	}
	return out
}
