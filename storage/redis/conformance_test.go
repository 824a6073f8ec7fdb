package redisstore

import (
	"testing"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/storage/storetest"
)

// The store conformance suite on miniredis (always) and on the real server
// when SCHEDULER_TEST_REDIS_ADDR is set; every subtest gets its own prefix.
func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) scheduler.Store {
			h := newMini(t)
			h.followClock(t)
			t.Cleanup(func() { h.checkConsistent(t) })
			return h.s
		})
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		realAddr(t)
		storetest.Run(t, func(t *testing.T) scheduler.Store {
			h := newReal(t)
			t.Cleanup(func() { h.checkConsistent(t) })
			return h.s
		})
	})
}
