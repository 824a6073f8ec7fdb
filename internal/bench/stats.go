package main

import (
	"slices"
	"sync"
	"time"
)

// result is one measured run of one system.
type result struct {
	tasks   int
	elapsed time.Duration
	lat     []time.Duration // submit-to-done, one per task
	cpu     cpuUse          // CPU used during the timed part
	// stages holds, when the run recorded them, the parts of each task's
	// latency (see recorder.started).
	stages [numStages][]time.Duration
	late   []time.Duration // steady runs: how late each submit call was
}

func (r result) rate() float64 { return float64(r.tasks) / r.elapsed.Seconds() }

// pct returns the p-quantile (0..1) of r's latencies in milliseconds.
func (r result) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	return ms(quantile(r.lat, p))
}

func quantile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// The stages of a task's latency, as recorder.started splits it.
const (
	stageToWorker = iota // submit call until a worker has the task's message
	stageStart           // until the worker has stored the task running
	stageToDone          // until done (handler, storing the outcome)
	numStages
)

// stageNames head the columns of the latency breakdown.
var stageNames = [numStages]string{"submit → at a worker", "→ stored running", "→ done"}

// recorder collects the submit-to-done latency of each task and signals
// when want tasks are done.
type recorder struct {
	mu   sync.Mutex
	lat  []time.Duration
	want int
	done chan struct{}

	// With breakdown, the systems report when each task reached a worker
	// and when it was stored running; running holds those times by submit
	// time until the task is done.
	breakdown bool
	running   map[int64][2]time.Time
	stages    [numStages][]time.Duration

	warm     int // warm-up tasks (payload time 0) to wait for
	warmSeen int
	warmDone chan struct{}
}

func newRecorder(want int) *recorder {
	return &recorder{lat: make([]time.Duration, 0, want), want: want, done: make(chan struct{}),
		warm: warmup, warmDone: make(chan struct{})}
}

// add records one task done at now that was submitted at sub. A task
// submitted at time 0 is a warm-up task: counted apart.
func (r *recorder) add(sub, now time.Time) {
	r.mu.Lock()
	if sub.UnixNano() == 0 {
		r.warmSeen++
		if r.warmSeen == r.warm {
			close(r.warmDone)
		}
		r.mu.Unlock()
		return
	}
	r.lat = append(r.lat, now.Sub(sub))
	n := len(r.lat)
	if at, ok := r.running[sub.UnixNano()]; ok {
		delete(r.running, sub.UnixNano())
		r.stages[stageToWorker] = append(r.stages[stageToWorker], at[0].Sub(sub))
		r.stages[stageStart] = append(r.stages[stageStart], at[1].Sub(at[0]))
		r.stages[stageToDone] = append(r.stages[stageToDone], now.Sub(at[1]))
	}
	r.mu.Unlock()
	if n == r.want {
		close(r.done)
	}
}

// withBreakdown makes r record the stages of each task's latency.
func (r *recorder) withBreakdown() *recorder {
	r.breakdown = true
	r.running = make(map[int64][2]time.Time, r.want)
	return r
}

// started records that the task submitted at sub reached a worker at
// atWorker and was stored running at stored; a no-op without breakdown.
func (r *recorder) started(sub, atWorker, stored time.Time) {
	if !r.breakdown || sub.UnixNano() == 0 {
		return
	}
	r.mu.Lock()
	r.running[sub.UnixNano()] = [2]time.Time{atWorker, stored}
	r.mu.Unlock()
}

// stageLatencies returns the stages of the tasks done so far.
func (r *recorder) stageLatencies() [numStages][]time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [numStages][]time.Duration
	for i, d := range r.stages {
		out[i] = slices.Clone(d)
	}
	return out
}

func (r *recorder) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lat)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
