package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/broker/rabbitmq"
	"github.com/dtsched/scheduler/internal/tcpproxy"
	"github.com/dtsched/scheduler/internal/testenv"
	redisstore "github.com/dtsched/scheduler/storage/redis"
)

// binary is the examples/distributed program TestMain built, empty when
// the servers are not configured.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv(testenv.RedisEnv) == "" || os.Getenv(testenv.AMQPEnv) == "" {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "scheduler-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "distributed")
		build := exec.Command("go", "build", "-o", binary, "github.com/dtsched/scheduler/examples/distributed")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building examples/distributed: %v\n%s", err, out)
			return 1
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// servers returns the shared Redis address and AMQP URL, or skips t.
func servers(t *testing.T) (redisAddr, amqpURL string) {
	t.Helper()
	redisAddr, amqpURL = testenv.Servers(t)
	require.NotEmpty(t, binary, "TestMain did not build examples/distributed")
	return redisAddr, amqpURL
}

// ctxFor returns a context that ends after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond every 20 ms until it holds, and fails t if d
// passes first or the test's own failure makes waiting pointless.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cluster is one test case's world: a namespace on the servers, the
// processes of examples/distributed it started, the execution log they
// append to, and an in-process Scheduler on the same backends to submit
// tasks and read the store.
type cluster struct {
	t         *testing.T
	ns        string
	dir       string
	redisAddr string // what the processes and the test's store use
	amqpURL   string // what the processes and the test's broker use
	execLog   string

	// knobs passed to every process
	heartbeat, amqpHeartbeat, sweep, retryBase, retryMax time.Duration

	rdb    *redis.Client
	store  *redisstore.Store
	broker *rabbitmq.Broker
	sched  *scheduler.Scheduler

	mu    sync.Mutex
	procs []*proc
}

// clusterOpts changes how newCluster connects.
type clusterOpts struct {
	redisAddr string // instead of the shared server
	amqpURL   string // instead of the shared server (a proxy)
}

// newCluster returns a cluster with a fresh namespace named after the
// test. Everything it starts is stopped by t.Cleanup.
func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	sharedRedis, sharedAMQP := servers(t)
	redisAddr, amqpURL := sharedRedis, sharedAMQP
	if o.redisAddr != "" {
		redisAddr = o.redisAddr
	}
	if o.amqpURL != "" {
		amqpURL = o.amqpURL
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	// The namespace's keys and queues go when the test ends, after the
	// processes (cleanups run last registered first).
	ns := testenv.Namespace(t, redisAddr, sharedAMQP, "e2e-"+strings.Trim(name, "-"))
	c := &cluster{
		t: t, ns: ns,
		dir: t.TempDir(), redisAddr: redisAddr, amqpURL: amqpURL,
		heartbeat: 200 * time.Millisecond, amqpHeartbeat: 2 * time.Second, sweep: 300 * time.Millisecond,
		retryBase: 50 * time.Millisecond, retryMax: 200 * time.Millisecond,
	}
	c.execLog = filepath.Join(c.dir, "exec.jsonl")

	ctx := ctxFor(t, 30*time.Second)
	c.rdb = redis.NewClient(&redis.Options{Addr: redisAddr})
	var err error
	c.store, err = redisstore.New(c.rdb, redisstore.WithPrefix(c.ns))
	require.NoError(t, err)
	c.broker, err = rabbitmq.New(ctx, []string{amqpURL}, rabbitmq.WithPrefix(c.ns),
		rabbitmq.WithConnectionName(c.ns+"-test"), rabbitmq.WithReconnectBackoff(10*time.Millisecond, 500*time.Millisecond))
	require.NoError(t, err)
	c.sched, err = scheduler.New(c.broker, c.store)
	require.NoError(t, err)
	t.Cleanup(c.close)
	return c
}

// close stops every process still running, then the in-process clients.
func (c *cluster) close() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	if c.t.Failed() {
		for _, p := range procs {
			c.t.Logf("output of %s (%s):\n%s", p.id, p.state(), tail(p.outPath, 60))
		}
	}
	_ = c.sched.Close()
	_ = c.broker.Close()
	_ = c.rdb.Close()
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// proc is one process of examples/distributed started by the test.
type proc struct {
	id      string
	role    string
	cmd     *exec.Cmd
	outPath string
	apiURL  chan string // receives the API's base URL once it listens
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

// procOpts are the flags of one process beyond the cluster's.
type procOpts struct {
	role        string // api, worker or both; default worker
	concurrency int    // default 4
	shutdown    time.Duration
	failpoint   string
	serve       bool // a worker serves /metrics too
	extra       []string
}

// start starts a process with id (also its worker ID) and returns at once.
func (c *cluster) start(id string, o procOpts) *proc {
	c.t.Helper()
	if o.role == "" {
		o.role = "worker"
	}
	if o.concurrency == 0 {
		o.concurrency = 4
	}
	if o.shutdown == 0 {
		o.shutdown = 20 * time.Second
	}
	args := []string{
		"-role", o.role, "-amqp", c.amqpURL, "-redis", c.redisAddr, "-namespace", c.ns,
		"-id", id, "-concurrency", strconv.Itoa(o.concurrency), "-shutdown-timeout", o.shutdown.String(),
		"-heartbeat", c.heartbeat.String(), "-amqp-heartbeat", c.amqpHeartbeat.String(),
		"-sweep", c.sweep.String(), "-retry-base", c.retryBase.String(), "-retry-max", c.retryMax.String(),
		"-exec-log", c.execLog,
	}
	if o.role != "worker" || o.serve {
		args = append(args, "-addr", "127.0.0.1:0")
	}
	if o.failpoint != "" {
		args = append(args, "-failpoint", o.failpoint)
	}
	args = append(args, o.extra...)
	p := &proc{id: id, role: o.role, outPath: filepath.Join(c.dir, id+".out"), apiURL: make(chan string, 1), done: make(chan struct{})}
	out, err := os.Create(p.outPath)
	require.NoError(c.t, err)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = &lineWatcher{w: out, onLine: func(line string) {
		if m := servingRE.FindStringSubmatch(line); m != nil {
			select {
			case p.apiURL <- strings.TrimSuffix(m[1], "/"):
			default:
			}
		}
	}}
	p.cmd.Stderr = out
	require.NoError(c.t, p.cmd.Start(), "starting %s", id)
	go func() {
		p.err = p.cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

var servingRE = regexp.MustCompile(`serving the scheduler API at (http://\S+)`)

// cleanEnv is the test's environment without the example's SCHEDULER_*
// variables, so that only the flags configure a process.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SCHEDULER_") && !strings.HasPrefix(kv, "SCHEDULER_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// lineWatcher passes what it is written to w and every complete line to
// onLine.
type lineWatcher struct {
	w      io.Writer
	onLine func(string)
	buf    []byte
}

func (l *lineWatcher) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.onLine(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(b)
}

// startWorker starts a worker process and waits until it has registered
// in the store.
func (c *cluster) startWorker(id string, o procOpts) *proc {
	c.t.Helper()
	p := c.start(id, o)
	c.waitRegistered(p)
	return p
}

// waitRegistered waits until p's heartbeat is in the store.
func (c *cluster) waitRegistered(p *proc) {
	c.t.Helper()
	waitUntil(c.t, 60*time.Second, p.id+" to register", func() bool {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited before registering: %v\n%s", p.id, p.err, tail(p.outPath, 30))
		default:
		}
		ws, err := c.sched.Workers(context.Background())
		if err != nil {
			return false
		}
		for _, w := range ws {
			if w.ID == p.id {
				return true
			}
		}
		return false
	})
}

// api waits for p's HTTP API and returns its base URL.
func (p *proc) api(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.apiURL:
		p.apiURL <- u
		return u
	case <-p.done:
		t.Fatalf("%s exited before serving: %v\n%s", p.id, p.err, tail(p.outPath, 30))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not serve its API within a minute", p.id)
	}
	return ""
}

// signal sends sig to p, a process this test started.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig), "signal %s to %s", sig, p.id)
}

// kill ends p with SIGKILL if it still runs, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// wait waits up to d for p to exit and returns its exit code (-1 when a
// signal ended it).
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s\n%s", p.id, d, tail(p.outPath, 30))
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("%s: %v", p.id, p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// state describes how p ended, or that it runs.
func (p *proc) state() string {
	select {
	case <-p.done:
		return p.cmd.ProcessState.String()
	default:
		return "running"
	}
}

// task is what the test submits: a demo task and the outcome it must have.
type task struct {
	typ        string
	payload    string
	priority   int
	maxRetries int
	// want is the terminal state the task must reach.
	want scheduler.State
	// wantErr is a fragment of LastError for a dead task.
	wantErr string
}

// submitted is a task the store accepted, with its ID.
type submitted struct {
	task
	id string
}

// sleepTask returns a demo.sleep task of ms milliseconds.
func sleepTask(ms, priority int) task {
	return task{typ: "demo.sleep", payload: fmt.Sprintf(`{"ms":%d}`, ms), priority: priority, maxRetries: 3, want: scheduler.StateSucceeded}
}

// flakyTask returns a demo.flaky task failing its first n attempts.
func flakyTask(n, priority, maxRetries int) task {
	t := task{typ: "demo.flaky", payload: fmt.Sprintf(`{"fail_first":%d}`, n), priority: priority, maxRetries: maxRetries, want: scheduler.StateSucceeded}
	if n > maxRetries {
		t.want, t.wantErr = scheduler.StateDead, fmt.Sprintf("attempt %d of the first %d fails", maxRetries+1, n)
	}
	return t
}

// panicTask returns a demo.panic task.
func panicTask(priority, maxRetries int) task {
	return task{typ: "demo.panic", priority: priority, maxRetries: maxRetries, want: scheduler.StateDead, wantErr: "panic"}
}

// mix returns n tasks of mixed types, durations and priorities, the same
// for the same seed: mostly short sleeps, some long ones, some tasks that
// fail once or twice before they succeed.
func mix(n int, seed uint64) []task {
	r := rand.New(rand.NewPCG(seed, 0))
	out := make([]task, n)
	for i := range out {
		prio := r.IntN(10)
		switch k := r.IntN(100); {
		case k < 70:
			out[i] = sleepTask(r.IntN(40), prio)
		case k < 85:
			out[i] = sleepTask(100+r.IntN(300), prio)
		default:
			out[i] = flakyTask(1+r.IntN(2), prio, 3)
		}
	}
	return out
}

// submit submits tasks through the library from `parallel` goroutines and
// returns them with their IDs; every Submit must succeed.
func (c *cluster) submit(ctx context.Context, tasks []task, parallel int) []submitted {
	c.t.Helper()
	ok, failed := c.submitAllowingErrors(ctx, tasks, parallel)
	require.Empty(c.t, failed, "Submit failed for some tasks")
	return ok
}

// submitAllowingErrors is submit that returns the errors of the Submits
// that failed instead of failing the test.
func (c *cluster) submitAllowingErrors(ctx context.Context, tasks []task, parallel int) (ok []submitted, failed []error) {
	return submitEach(tasks, parallel, func(tk task) (string, error) {
		return c.sched.Submit(ctx, tk.typ, []byte(tk.payload),
			scheduler.WithPriority(scheduler.Priority(tk.priority)), scheduler.WithMaxRetries(tk.maxRetries))
	})
}

// submitEach submits tasks with submit from `parallel` goroutines and
// returns those it accepted, with their IDs, and the errors of the others.
func submitEach(tasks []task, parallel int, submit func(task) (string, error)) (ok []submitted, failed []error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan task)
	)
	for range parallel {
		wg.Go(func() {
			for tk := range next {
				id, err := submit(tk)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					ok = append(ok, submitted{task: tk, id: id})
				}
				mu.Unlock()
			}
		})
	}
	for _, tk := range tasks {
		next <- tk
	}
	close(next)
	wg.Wait()
	return ok, failed
}

// submitHTTP submits tk through the API at base and returns its ID.
func submitHTTP(ctx context.Context, base string, tk task) (string, error) {
	body, err := json.Marshal(map[string]any{
		"type": tk.typ, "payload": json.RawMessage(orNull(tk.payload)), "priority": tk.priority, "max_retries": tk.maxRetries,
	})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/submit", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /submit: %s: %s", resp.Status, b)
	}
	var got struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.ID == "" {
		return "", fmt.Errorf("POST /submit: answer %s: %v", b, err)
	}
	return got.ID, nil
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// counts returns the namespace's tasks per state.
func (c *cluster) counts(ctx context.Context) (map[scheduler.State]int64, error) {
	return c.sched.Counts(ctx)
}

// waitFinished waits until n tasks of the namespace are terminal and none
// waits or runs.
func (c *cluster) waitFinished(d time.Duration, n int) {
	c.t.Helper()
	var last map[scheduler.State]int64
	deadline := time.Now().Add(d)
	for {
		cs, err := c.counts(context.Background())
		if err == nil {
			last = cs
			var terminal, open int64
			for s, k := range cs {
				if s.Terminal() {
					terminal += k
				} else {
					open += k
				}
			}
			if terminal >= int64(n) && open == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %d tasks to finish; counts %v", d, n, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ownRedis starts a redis-server of the test's own on a free port, killed
// by t.Cleanup, and returns its address.
func ownRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: the case needs its own Redis to pause")
	}
	dir := t.TempDir()
	var addr string
	var cmd *exec.Cmd
	for range 5 {
		port := freePort(t)
		addr = "127.0.0.1:" + strconv.Itoa(port)
		cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); _ = out.Close(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		c := redis.NewClient(&redis.Options{Addr: addr})
		up := false
		for range 100 {
			select {
			case <-done:
			default:
				if c.Ping(context.Background()).Err() == nil {
					up = true
				}
			}
			if up {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
		if up {
			return addr
		}
		_ = cmd.Process.Kill() // the port was taken meanwhile: try another
	}
	t.Fatal("could not start a redis-server of the test's own")
	return ""
}

// amqpProxy starts a tcpproxy in front of the shared RabbitMQ and returns
// it with the URL that goes through it.
func amqpProxy(t *testing.T) (*tcpproxy.Proxy, string) {
	t.Helper()
	_, amqpURL := servers(t)
	u, err := url.Parse(amqpURL)
	require.NoError(t, err)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	p, err := tcpproxy.New(host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// metric returns the value of the unlabelled sample name on p's /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.api(t) + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err, "%s on %s", l, p.id)
			return f
		}
	}
	t.Fatalf("%s serves no %s", p.id, name)
	return 0
}

// readFile returns the content of the file at path.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
