package scheduler

import "github.com/dtsched/scheduler/internal/clock"

// SetClock makes s read the time from c and wait on c's timers. Call it
// before s is used.
func SetClock(s *Scheduler, c clock.Clock) {
	s.now = c.Now
	s.periodic.clock = c
}

// PeriodicRounds returns how many rounds the periodic loop of s completed.
func PeriodicRounds(s *Scheduler) int64 { return s.periodic.rounds.Load() }

// TickID is the ID of the task the schedule name submits for a tick.
var TickID = tickID
