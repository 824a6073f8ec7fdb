package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/testenv"
)

// readmeBlocks returns the fenced blocks of the README that follow a
// "<!-- walkthrough: NAME -->" marker, by name.
func readmeBlocks(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	marker := regexp.MustCompile("(?m)^<!-- walkthrough: (\\w+) -->\n```sh\n((?s:.*?))```\n")
	blocks := map[string][]string{}
	for _, m := range marker.FindAllStringSubmatch(string(src), -1) {
		blocks[m[1]] = strings.Split(strings.TrimSuffix(m[2], "\n"), "\n")
	}
	require.Len(t, blocks, 3, "the README's walk-through blocks: nodes, submit, kill")
	return blocks
}

// buildExample builds the program into a temporary directory.
func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "distributed")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// node is a process of the example started by a test.
type node struct {
	cmd  *exec.Cmd
	url  string // of its HTTP API
	log  string // path of its stderr
	exit chan error
}

// startNode starts the example binary with args and waits for its API.
func startNode(t *testing.T, bin string, args []string) *node {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), "node.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stderr = logFile
	require.NoError(t, cmd.Start())
	n := &node{cmd: cmd, log: logPath, exit: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "serving the scheduler API at "); ok {
				urls <- u
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		n.exit <- cmd.Wait()
		logFile.Close()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.exit
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("log of %v:\n%s", args, log)
		}
	})
	select {
	case n.url = <-urls:
	case err := <-n.exit:
		log, _ := os.ReadFile(logPath)
		t.Fatalf("node %v exited: %v\n%s", args, err, log)
	case <-time.After(wait):
		t.Fatalf("node %v did not serve its API", args)
	}
	return n
}

// TestREADMEWalkthrough follows the README's three-terminal walk-through
// with the commands it shows: one API node and two workers, a long task
// and a few short ones, then the worker running the long task is killed
// and the other finishes it. Each node gets a free port and the test's
// own namespace; the kill goes to the process by PID.
func TestREADMEWalkthrough(t *testing.T) {
	redisAddr, amqpURL := testenv.Servers(t)
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walk-through uses %s, which is not installed", tool)
		}
	}
	blocks := readmeBlocks(t)
	ns := testenv.Namespace(t, redisAddr, amqpURL, "walkthrough")
	bin := buildExample(t)

	// Terminals 1 to 3. The README's ports and IDs become the test's own.
	replace := []string{}
	nodes := map[string]*node{}
	ids := map[string]string{} // README ID to the test's
	for _, line := range blocks["nodes"] {
		args, ok := strings.CutPrefix(line, "go run ./examples/distributed ")
		require.True(t, ok, "a node's command: %q", line)
		fields := strings.Fields(args)
		id := "api"
		for i, f := range fields {
			if f == "-id" {
				id = fields[i+1]
				ids[id] = ns + "-" + id
				fields[i+1] = ids[id]
			}
		}
		addr := ""
		for i, f := range fields {
			if f == "-addr" {
				addr = fields[i+1]
			}
		}
		require.NotEmpty(t, addr, "every node of the walk-through serves HTTP: %q", line)
		fields = append(fields, "-addr", "127.0.0.1:0", "-namespace", ns, "-redis", redisAddr, "-amqp", amqpURL)
		n := startNode(t, bin, fields)
		nodes[id] = n
		replace = append(replace, "http://"+addr+"/", n.url, addr+"/", strings.TrimPrefix(n.url, "http://"))
	}
	require.Contains(t, nodes, "api")
	require.Len(t, ids, 2, "two workers")
	api := nodes["api"].url
	workerIDs := map[string]bool{}
	for _, id := range ids {
		workerIDs[id] = true
	}
	require.Eventually(t, func() bool {
		var body struct{ Workers []scheduler.WorkerInfo }
		getJSON(t, api+"workers", &body)
		seen := 0
		for _, w := range body.Workers {
			if workerIDs[w.ID] {
				seen++
			}
		}
		return seen == 2
	}, wait, 20*time.Millisecond, "both workers register")

	// Terminal 4: submit.
	script := strings.NewReplacer(replace...).Replace(strings.Join(blocks["submit"], "\n"))
	out := bash(t, script+"\necho \"ID=$ID\"")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	id, ok := strings.CutPrefix(lines[len(lines)-1], "ID=")
	require.True(t, ok, "%s", out)
	seen := map[string]bool{}
	for _, l := range lines[:len(lines)-1] {
		var w struct {
			ID string `json:"id"`
		}
		if json.Unmarshal([]byte(l), &w) == nil && workerIDs[w.ID] {
			seen[w.ID] = true
		}
	}
	require.Len(t, seen, 2, "the workers line shows both workers:\n%s", out)

	var long scheduler.Task
	require.Eventually(t, func() bool {
		getJSON(t, api+"status/"+id, &long)
		return long.State == scheduler.StateRunning
	}, wait, 20*time.Millisecond, "the long task runs")
	victim := long.WorkerID
	require.True(t, workerIDs[victim], "run by a worker of the walk-through: %q", victim)

	// The kill: the README's pkill, sent to the worker's PID.
	kill := blocks["kill"]
	require.Len(t, kill, 2)
	pkill := regexp.MustCompile(`^pkill -KILL -f -- "-id (.*) "$`)
	m := pkill.FindStringSubmatch(kill[0])
	require.NotNil(t, m, "the kill line: %q", kill[0])
	var pids []string
	for readmeID, testID := range ids {
		pids = append(pids, fmt.Sprintf("%s) echo %d;;", testID, nodes[readmeID].cmd.Process.Pid))
	}
	preamble := fmt.Sprintf("ID=%s\npid_of() { case \"$1\" in %s esac; }\n", id, strings.Join(pids, " "))
	bash(t, preamble+strings.NewReplacer(replace...).Replace("kill -KILL $(pid_of "+m[1]+")"))
	var victimNode *node
	for readmeID, testID := range ids {
		if testID == victim {
			victimNode = nodes[readmeID]
		}
	}
	select {
	case err := <-victimNode.exit:
		require.ErrorContains(t, err, "killed")
		victimNode.exit <- err // for the cleanup
	case <-time.After(wait):
		t.Fatal("the killed worker did not exit")
	}

	// The other worker finishes the long task: the README sleeps, the test
	// waits for it.
	check, ok := strings.CutPrefix(kill[1], "sleep 12; ")
	require.True(t, ok, "the check line: %q", kill[1])
	require.Eventually(t, func() bool {
		getJSON(t, api+"status/"+id, &long)
		return long.State.Terminal()
	}, wait, 50*time.Millisecond, "the long task finishes")
	out = bash(t, preamble+strings.NewReplacer(replace...).Replace(check))
	var final struct {
		State    scheduler.State `json:"state"`
		Attempt  int             `json:"attempt"`
		WorkerID string          `json:"worker_id"`
	}
	require.NoError(t, json.Unmarshal(out, &final), "%s", out)
	require.Equal(t, scheduler.StateSucceeded, final.State)
	require.Equal(t, 2, final.Attempt, "the README says attempt 2")
	require.NotEqual(t, victim, final.WorkerID)
	require.True(t, workerIDs[final.WorkerID])

	// "Watch the numbers": the surviving worker's metrics.
	resp, err := http.Get(nodes[readmeIDOf(ids, final.WorkerID)].url + "metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Regexp(t, `(?m)^scheduler_tasks_finished_total\{state="succeeded",type="demo.sleep"\} [1-9]`, string(body))

	// SIGTERM drains the API node and the surviving worker.
	for name, n := range nodes {
		if n == victimNode {
			continue
		}
		require.NoError(t, n.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-n.exit:
			require.NoError(t, err, "%s drains and exits 0", name)
			n.exit <- err
		case <-time.After(wait):
			t.Fatalf("%s did not drain", name)
		}
	}
}

func readmeIDOf(ids map[string]string, testID string) string {
	for r, id := range ids {
		if id == testID {
			return r
		}
	}
	return ""
}

// bash runs script with bash -euo pipefail and returns its stdout.
func bash(t *testing.T, script string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "script:\n%s\nstderr:\n%s", script, stderr.String())
	return out
}

// TestSecondSignalExitsAtOnce: the first SIGINT starts a drain that would
// wait for a long task; the second ends the process at once, with status
// 1, leaving the task to be redelivered.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	redisAddr, amqpURL := testenv.Servers(t)
	ns := testenv.Namespace(t, redisAddr, amqpURL, "signals")
	bin := buildExample(t)
	n := startNode(t, bin, []string{"-addr", "127.0.0.1:0", "-namespace", ns, "-id", ns,
		"-redis", redisAddr, "-amqp", amqpURL, "-shutdown-timeout", "10m"})
	task := post(t, n.url+"submit", `{"type":"demo.sleep","payload":{"ms":600000}}`)
	require.Eventually(t, func() bool { return get(t, n.url+"status/"+task.ID).State == scheduler.StateRunning }, wait, 20*time.Millisecond)

	require.NoError(t, n.cmd.Process.Signal(os.Interrupt))
	require.Eventually(t, func() bool {
		log, _ := os.ReadFile(n.log)
		return strings.Contains(string(log), `"msg":"worker draining"`)
	}, wait, 20*time.Millisecond)
	select {
	case err := <-n.exit:
		t.Fatalf("exited during the drain, with a task running: %v", err)
	default:
	}
	require.NoError(t, n.cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-n.exit:
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		require.Equal(t, 1, exit.ExitCode())
		n.exit <- err
	case <-time.After(wait):
		t.Fatal("the second signal did not end the process")
	}
	log, _ := os.ReadFile(n.log)
	require.Contains(t, string(log), "exiting at once")
}
