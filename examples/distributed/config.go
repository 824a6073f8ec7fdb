package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dtsched/scheduler/internal/failpoint"
)

// Roles a process can take.
const (
	roleAPI    = "api"
	roleWorker = "worker"
	roleBoth   = "both"
)

// config is what the flags and the environment set.
type config struct {
	role            string
	amqp            []string
	redis           string
	addr            string
	token           string
	concurrency     int
	queues          []string
	id              string
	shutdownTimeout time.Duration
	namespace       string
	debug           bool

	heartbeat     time.Duration
	amqpHeartbeat time.Duration
	sweep         time.Duration
	retryBase     time.Duration
	retryMax      time.Duration
	execLog       string
	failpoint     string
}

// serves reports whether the process serves the HTTP API.
func (c *config) serves() bool { return c.addr != "" }

// works reports whether the process runs a worker.
func (c *config) works() bool { return c.role != roleAPI }

// listValue is a flag that may be repeated and takes comma-separated
// values.
type listValue struct {
	vals *[]string
	set  bool
}

func (l *listValue) String() string {
	if l == nil || l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l *listValue) Set(s string) error {
	if !l.set {
		*l.vals = nil // the first Set replaces the default
		l.set = true
	}
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.vals = append(*l.vals, v)
		}
	}
	return nil
}

// usageHeader introduces the flags in -h.
const usageHeader = `Usage: distributed [flags]

Runs the scheduler's HTTP API, a worker, or both, against RabbitMQ and
Redis. Start as many as you like on as many machines: they share the work.
Every flag can also be set by the environment variable shown beside it; a
flag beats its variable.

Flags:
`

// parseConfig reads the flags in args, falling back to the environment
// (through getenv) for each flag not given.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	host, _ := os.Hostname()
	c := &config{
		amqp:   []string{"amqp://guest:guest@127.0.0.1:5672/"},
		queues: []string{"default"},
	}
	fs := flag.NewFlagSet("distributed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{} // flag name to variable
	bind := func(name, variable string) string {
		env[name] = variable
		return " ($" + variable + ")"
	}
	fs.StringVar(&c.role, "role", roleBoth, "what this process does: api (HTTP API only), worker (run tasks) or both"+bind("role", "SCHEDULER_ROLE"))
	fs.Var(&listValue{vals: &c.amqp}, "amqp", "RabbitMQ URL; repeat it or separate by commas for a cluster, tried in turn"+bind("amqp", "SCHEDULER_AMQP"))
	fs.StringVar(&c.redis, "redis", "127.0.0.1:6379", "Redis address host:port, or a redis:// URL"+bind("redis", "SCHEDULER_REDIS"))
	fs.StringVar(&c.addr, "addr", "", "address the HTTP API listens on, with /metrics; default 127.0.0.1:8080 for api and both, none for worker"+bind("addr", "SCHEDULER_ADDR"))
	fs.StringVar(&c.token, "token", "", "require this bearer token on the HTTP API"+bind("token", "SCHEDULER_TOKEN"))
	fs.IntVar(&c.concurrency, "concurrency", 8, "tasks the worker runs at once"+bind("concurrency", "SCHEDULER_CONCURRENCY"))
	fs.Var(&listValue{vals: &c.queues}, "queues", "queues the worker takes tasks from, comma-separated"+bind("queues", "SCHEDULER_QUEUES"))
	fs.StringVar(&c.id, "id", fmt.Sprintf("%s-%d", host, os.Getpid()), "worker ID, unique in the cluster"+bind("id", "SCHEDULER_WORKER_ID"))
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a drain waits for running tasks before handing them back"+bind("shutdown-timeout", "SCHEDULER_SHUTDOWN_TIMEOUT"))
	fs.StringVar(&c.namespace, "namespace", "distributed", "prefix of the Redis keys and RabbitMQ queues; processes that share work share it"+bind("namespace", "SCHEDULER_NAMESPACE"))
	fs.BoolVar(&c.debug, "debug", false, "log at debug level"+bind("debug", "SCHEDULER_DEBUG"))
	fs.DurationVar(&c.heartbeat, "heartbeat", 2*time.Second, "how often the worker records that it is alive"+bind("heartbeat", "SCHEDULER_HEARTBEAT"))
	fs.DurationVar(&c.amqpHeartbeat, "amqp-heartbeat", 10*time.Second, "AMQP heartbeat; RabbitMQ redelivers a silent worker's tasks after two to three of them"+bind("amqp-heartbeat", "SCHEDULER_AMQP_HEARTBEAT"))
	fs.DurationVar(&c.sweep, "sweep", 10*time.Second, "how often workers republish tasks whose publish was never confirmed and purge expired ones"+bind("sweep", "SCHEDULER_SWEEP_INTERVAL"))
	fs.DurationVar(&c.retryBase, "retry-base", time.Second, "backoff before the first retry, doubling each time"+bind("retry-base", "SCHEDULER_RETRY_BASE"))
	fs.DurationVar(&c.retryMax, "retry-max", 30*time.Second, "longest backoff between retries"+bind("retry-max", "SCHEDULER_RETRY_MAX"))
	fs.StringVar(&c.execLog, "exec-log", "", "append a JSON line to this file when a handler starts and ends (for fault tests)"+bind("exec-log", "SCHEDULER_EXEC_LOG"))
	fs.StringVar(&c.failpoint, "failpoint", "", "exit with status 3 on reaching this failpoint, e.g. "+failpoint.SubmitAfterStore+" (for fault tests)"+bind("failpoint", "SCHEDULER_FAILPOINT"))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, variable := range env {
		v := getenv(variable)
		if given[name] || v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return nil, fmt.Errorf("$%s: %w", variable, err)
		}
	}
	if c.addr == "" && c.role != roleWorker {
		c.addr = "127.0.0.1:8080"
	}
	return c, c.validate()
}

// validate checks the values the flag package cannot.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.role {
	case roleAPI, roleWorker, roleBoth:
	default:
		bad("-role: want api, worker or both, got %q", c.role)
	}
	if len(c.amqp) == 0 {
		bad("-amqp: give at least one URL")
	}
	if c.redis == "" {
		bad("-redis: give an address or a URL")
	}
	if c.concurrency < 1 {
		bad("-concurrency: want at least 1, got %d", c.concurrency)
	}
	if len(c.queues) == 0 {
		bad("-queues: give at least one queue")
	}
	if c.id == "" {
		bad("-id: must not be empty")
	}
	if c.namespace == "" {
		bad("-namespace: must not be empty")
	}
	for name, d := range map[string]time.Duration{
		"-shutdown-timeout": c.shutdownTimeout, "-heartbeat": c.heartbeat, "-amqp-heartbeat": c.amqpHeartbeat,
		"-sweep": c.sweep, "-retry-base": c.retryBase, "-retry-max": c.retryMax,
	} {
		if d <= 0 {
			bad("%s: must be positive, got %s", name, d)
		}
	}
	if c.retryMax < c.retryBase {
		bad("-retry-max (%s) is shorter than -retry-base (%s)", c.retryMax, c.retryBase)
	}
	if c.failpoint != "" && c.failpoint != failpoint.SubmitAfterStore && c.failpoint != failpoint.WorkerBeforeFinish {
		bad("-failpoint: unknown failpoint %q (known: %s, %s)", c.failpoint, failpoint.SubmitAfterStore, failpoint.WorkerBeforeFinish)
	}
	return errors.Join(errs...)
}
