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

// recorder collects the submit-to-done latency of each task and signals
// when want tasks are done.
type recorder struct {
	mu   sync.Mutex
	lat  []time.Duration
	want int
	done chan struct{}

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
	r.mu.Unlock()
	if n == r.want {
		close(r.done)
	}
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
