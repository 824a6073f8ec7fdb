package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docBlock is a fenced block of docs/HTTP.md.
type docBlock struct {
	lang, text string
	line       int       // of the opening fence
	want       *docBlock // the answer shown right after a command block
	server     []string  // for a doc-test marker: the flags of a new server
}

// TestHTTPDoc runs the curl commands of docs/HTTP.md, in order, against
// this example, and checks each answer against the one the document shows
// right after the command: status lines, error codes and messages, task
// types, states and results, and the shape of every JSON answer. IDs,
// times and counts, which differ from run to run, are not compared.
func TestHTTPDoc(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("docs/HTTP.md uses %s, which is not installed", tool)
		}
	}
	src, err := os.ReadFile("../../docs/HTTP.md")
	require.NoError(t, err)
	segments := parseDoc(string(src))
	require.GreaterOrEqual(t, len(segments), 2)
	ran := 0
	for _, seg := range segments {
		ran += runSegment(t, seg)
	}
	require.Greater(t, ran, 20, "commands run")
}

// parseDoc returns the runnable command blocks, split where a
// "<!-- doc-test: server FLAGS -->" marker asks for a new server; each
// segment's first entry carries its flags.
func parseDoc(src string) [][]*docBlock {
	lines := strings.Split(src, "\n")
	var blocks []*docBlock
	marker := regexp.MustCompile(`^<!-- doc-test: server(.*)-->$`)
	lastEnd := -1
	for i := 0; i < len(lines); i++ {
		if m := marker.FindStringSubmatch(lines[i]); m != nil {
			blocks = append(blocks, &docBlock{server: strings.Fields(m[1]), line: i + 1})
			continue
		}
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		b := &docBlock{lang: lang, text: strings.Join(body, "\n"), line: start + 1}
		adjacent := strings.TrimSpace(strings.Join(lines[lastEnd+1:start], "")) == ""
		if n := len(blocks); adjacent && n > 0 && blocks[n-1].lang == "sh" && blocks[n-1].want == nil && lang != "sh" {
			blocks[n-1].want = b
		} else {
			blocks = append(blocks, b)
		}
		lastEnd = i
	}
	segments := [][]*docBlock{{{server: nil}}}
	for _, b := range blocks {
		switch {
		case b.server != nil:
			segments = append(segments, []*docBlock{b})
		case b.lang == "sh" && !strings.Contains(b.text, "go run"):
			segments[len(segments)-1] = append(segments[len(segments)-1], b)
		}
	}
	return segments
}

// runSegment starts a server with the segment's flags and runs its blocks
// in one shell, so that variables carry from block to block.
func runSegment(t *testing.T, seg []*docBlock) int {
	t.Helper()
	api, stop := start(t, seg[0].server...)
	defer func() { require.NoError(t, stop()) }()
	host := strings.TrimPrefix(strings.TrimSuffix(api, "/scheduler/"), "http://")
	cmds := seg[1:]
	var script strings.Builder
	script.WriteString("set -u\n")
	for i, b := range cmds {
		fmt.Fprintf(&script, "echo '@@begin %d@@'\n%s\necho \"@@end %d $?@@\"\n", i, strings.ReplaceAll(b.text, "127.0.0.1:8080", host), i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script.String())
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "%s", out.String())

	got := out.String()
	for i, b := range cmds {
		begin, end := fmt.Sprintf("@@begin %d@@\n", i), fmt.Sprintf("@@end %d ", i)
		s := strings.Index(got, begin)
		e := strings.Index(got, end)
		require.True(t, s >= 0 && e > s, "block at line %d: no output markers in %s", b.line, got)
		output := got[s+len(begin) : e]
		rest := got[e+len(end):]
		status := rest[:strings.Index(rest, "@@")]
		require.Equal(t, "0", status, "block at line %d failed: %s", b.line, output)
		if b.want != nil {
			checkAnswer(t, b, output)
		}
	}
	return len(cmds)
}

// checkAnswer compares what a command printed with the answer shown.
func checkAnswer(t *testing.T, b *docBlock, got string) {
	t.Helper()
	want := b.want.text
	where := fmt.Sprintf("docs/HTTP.md:%d", b.line)
	switch b.want.lang {
	case "json":
		compareJSON(t, where, want, strings.TrimSpace(got))
	case "http":
		wantHead, wantBody, _ := strings.Cut(want, "\n\n")
		gotHead, gotBody, ok := strings.Cut(strings.ReplaceAll(got, "\r\n", "\n"), "\n\n")
		require.True(t, ok, "%s: no HTTP answer in %q", where, got)
		wantLines, gotLines := strings.Split(wantHead, "\n"), strings.Split(gotHead, "\n")
		require.Equal(t, wantLines[0], gotLines[0], where)
		headers := map[string]string{}
		for _, l := range gotLines[1:] {
			k, v, _ := strings.Cut(l, ": ")
			headers[strings.ToLower(k)] = v
		}
		for _, l := range wantLines[1:] {
			k, v, _ := strings.Cut(l, ": ")
			k = strings.ToLower(k)
			gotV, ok := headers[k]
			require.True(t, ok, "%s: header %s missing in %q", where, k, gotHead)
			switch k {
			case "allow", "content-type", "www-authenticate", "connection", "cache-control", "x-content-type-options":
				require.Equal(t, v, gotV, "%s: header %s", where, k)
			case "location":
				require.Equal(t, v[:strings.LastIndexByte(v, '/')+1], gotV[:strings.LastIndexByte(gotV, '/')+1], "%s: header %s", where, k)
			}
		}
		compareJSON(t, where, wantBody, strings.TrimSpace(gotBody))
	case "text":
		wantLines := strings.Split(strings.TrimSpace(want), "\n")
		gotLines := strings.Split(strings.TrimSpace(got), "\n")
		sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?) \S+$`)
		if slices.IndexFunc(wantLines, func(l string) bool { return !sample.MatchString(l) }) < 0 {
			// Metric samples: the series shown exist; their values vary.
			var series []string
			for _, l := range gotLines {
				if m := sample.FindStringSubmatch(l); m != nil {
					series = append(series, m[1])
				}
			}
			for _, l := range wantLines {
				require.Contains(t, series, sample.FindStringSubmatch(l)[1], "%s: got %s", where, got)
			}
			return
		}
		require.Equal(t, wantLines, gotLines, where)
	default:
		t.Fatalf("%s: answer block of unknown kind %q", where, b.want.lang)
	}
}

// compareJSON checks that got has every member want has, with equal
// values where they are stable from run to run.
func compareJSON(t *testing.T, where, want, got string) {
	t.Helper()
	var w, g any
	require.NoError(t, json.Unmarshal([]byte(want), &w), "%s: the document's answer is not JSON", where)
	require.NoError(t, json.Unmarshal([]byte(got), &g), "%s: the answer is not JSON: %s", where, got)
	walkJSON(t, where, "", w, g, false)
}

// stable are the members whose values do not change from run to run;
// exact members are compared with everything inside them.
var (
	stable = map[string]bool{"code": true, "message": true, "field": true, "type": true, "queue": true, "priority": true,
		"status": true, "max_retries": true, "last_error": true, "concurrency": true, "queues": true}
	exact    = map[string]bool{"payload": true, "result": true, "checks": true}
	terminal = map[string]bool{"succeeded": true, "dead": true, "canceled": true}
)

func walkJSON(t *testing.T, where, path string, want, got any, compare bool) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: %s: want an object, got %v", where, path, got)
		done := terminal[fmt.Sprint(w["state"])]
		for k, wv := range w {
			gv, ok := g[k]
			require.True(t, ok, "%s: %s.%s missing in %v", where, path, k, got)
			c := compare || stable[k] || exact[k] || (k == "state" || k == "attempt") && done
			walkJSON(t, where, path+"."+k, wv, gv, c && k != "task_id")
		}
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: %s: want an array, got %v", where, path, got)
		require.Len(t, g, len(w), "%s: %s", where, path)
		for i := range w {
			walkJSON(t, where, fmt.Sprintf("%s[%d]", path, i), w[i], g[i], compare)
		}
	default:
		if compare {
			require.Equal(t, want, got, "%s: %s", where, path)
		}
	}
}
