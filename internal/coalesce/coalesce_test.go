package coalesce

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every call gets its own result, batches never exceed their bounds, and
// calls waiting while batches run share a batch.
func TestBatches(t *testing.T) {
	t.Parallel()
	var running, maxRunning, calls atomic.Int32
	var mu sync.Mutex
	var sizes []int
	release := make(chan struct{})
	g := &Group[int, int]{
		MaxBatch: 8, MaxInFlight: 2,
		Run: func(_ context.Context, reqs []int) ([]int, error) {
			r := running.Add(1)
			for {
				m := maxRunning.Load()
				if r <= m || maxRunning.CompareAndSwap(m, r) {
					break
				}
			}
			if calls.Add(1) <= 2 {
				<-release // hold the first two batches so that the others queue
			}
			mu.Lock()
			sizes = append(sizes, len(reqs))
			mu.Unlock()
			out := make([]int, len(reqs))
			for i, r := range reqs {
				out[i] = r * 10
			}
			running.Add(-1)
			return out, nil
		},
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			got, err := g.Do(context.Background(), i)
			assert.NoError(t, err)
			assert.Equal(t, i*10, got)
		})
	}
	require.Eventually(t, func() bool { return calls.Load() == 2 }, 5*time.Second, time.Millisecond)
	for i := 2; i < 40; i++ {
		wg.Go(func() {
			got, err := g.Do(context.Background(), i)
			assert.NoError(t, err)
			assert.Equal(t, i*10, got)
		})
	}
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queue) == 38
	}, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	require.LessOrEqual(t, maxRunning.Load(), int32(2))
	total := 0
	for _, s := range sizes {
		require.LessOrEqual(t, s, 8)
		total += s
	}
	require.Equal(t, 40, total)
	require.Len(t, sizes, 2+5, "38 waiting calls make 5 batches of at most 8")
	require.Zero(t, g.inFlight)
}

// A batch error reaches every call of the batch.
func TestBatchError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	g := &Group[int, int]{MaxBatch: 4, MaxInFlight: 1,
		Run: func(context.Context, []int) ([]int, error) { return nil, boom }}
	_, err := g.Do(context.Background(), 1)
	require.ErrorIs(t, err, boom)
}

// A Run that returns the wrong number of results fails its batch instead of
// leaving a call without one.
func TestWrongResultCount(t *testing.T) {
	t.Parallel()
	g := &Group[int, int]{MaxBatch: 4, MaxInFlight: 1,
		Run: func(context.Context, []int) ([]int, error) { return nil, nil }}
	_, err := g.Do(context.Background(), 1)
	require.ErrorContains(t, err, "0 results for 1 requests")
	_, err = g.Do(context.Background(), 2) // the batch slot was freed
	require.Error(t, err)
}

// A call whose context ends while it waits is never run; the batch context
// ends only when every call's context has.
func TestContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var seen [][]int
	var mu sync.Mutex
	g := &Group[int, int]{MaxBatch: 4, MaxInFlight: 1,
		Run: func(ctx context.Context, reqs []int) ([]int, error) {
			mu.Lock()
			seen = append(seen, reqs)
			mu.Unlock()
			if reqs[0] == 0 {
				<-release
			}
			return make([]int, len(reqs)), ctx.Err()
		}}
	first := make(chan error, 1)
	go func() { _, err := g.Do(context.Background(), 0); first <- err }()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { _, err := g.Do(ctx, 1); waiting <- err }()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-waiting, context.Canceled)
	close(release)
	require.NoError(t, <-first)
	_, err := g.Do(context.Background(), 2)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, [][]int{{0}, {2}}, seen, "the canceled call never ran")

	// Two calls in one batch: the batch context lives while either does.
	ctxA, cancelA := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	bc, stop := batchContext([]*call[int, int]{{ctx: ctxA}, {ctx: ctxB}})
	defer stop()
	cancelA()
	require.NoError(t, bc.Err())
	cancelB()
	require.Eventually(t, func() bool { return bc.Err() != nil }, 5*time.Second, time.Millisecond)
}

// A panicking batch fails its other calls and lets later calls run; the
// panic goes on in the call that ran the batch.
func TestPanic(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	g := &Group[int, int]{MaxBatch: 4, MaxInFlight: 1,
		Run: func(_ context.Context, reqs []int) ([]int, error) {
			if reqs[0] == 0 {
				<-release
				return []int{0}, nil
			}
			if reqs[0] == 1 {
				panic("boom")
			}
			return make([]int, len(reqs)), nil
		}}
	first := make(chan struct{})
	go func() { _, _ = g.Do(context.Background(), 0); close(first) }()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.inFlight == 1 }, 5*time.Second, time.Millisecond)
	panicked := make(chan any, 1)
	other := make(chan error, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = g.Do(context.Background(), 1)
	}()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 1 }, 5*time.Second, time.Millisecond)
	go func() { _, err := g.Do(context.Background(), 2); other <- err }()
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 2 }, 5*time.Second, time.Millisecond)
	close(release)
	<-first
	require.Equal(t, "boom", <-panicked)
	require.ErrorContains(t, <-other, "panicked")
	_, err := g.Do(context.Background(), 3)
	require.NoError(t, err, "the group works on")
}
