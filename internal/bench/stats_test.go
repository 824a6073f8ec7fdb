package main

import (
	"testing"
	"time"
)

// A task's latency splits into the stages its system reported; a task
// with no report counts in the total only, and warm-up tasks in neither.
func TestRecorderStages(t *testing.T) {
	rec := newRecorder(2).withBreakdown()
	sub := time.Unix(100, 0)
	rec.started(sub, sub.Add(3*time.Millisecond), sub.Add(5*time.Millisecond))
	rec.started(time.Unix(0, 0), sub, sub) // warm-up: ignored
	rec.add(time.Unix(0, 0), sub)
	rec.add(sub, sub.Add(9*time.Millisecond))
	other := time.Unix(200, 0)
	rec.add(other, other.Add(time.Millisecond))

	select {
	case <-rec.done:
	default:
		t.Fatal("two tasks done, done not closed")
	}
	if got := rec.latencies(); len(got) != 2 || got[0] != 9*time.Millisecond || got[1] != time.Millisecond {
		t.Fatalf("latencies = %v, want [9ms 1ms]", got)
	}
	st := rec.stageLatencies()
	want := [numStages]time.Duration{3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	for i, d := range st {
		if len(d) != 1 || d[0] != want[i] {
			t.Errorf("stage %q = %v, want [%v]", stageNames[i], d, want[i])
		}
	}
	if len(rec.running) != 0 {
		t.Errorf("%d tasks still held as running after they were done", len(rec.running))
	}
}

// Without breakdown, the recorder keeps no stages.
func TestRecorderNoBreakdown(t *testing.T) {
	rec := newRecorder(1)
	sub := time.Unix(100, 0)
	rec.started(sub, sub, sub)
	rec.add(sub, sub.Add(time.Millisecond))
	for i, d := range rec.stageLatencies() {
		if len(d) != 0 {
			t.Errorf("stage %q = %v without breakdown", stageNames[i], d)
		}
	}
}
