package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fired(tm Timer) bool {
	select {
	case <-tm.C():
		return true
	default:
		return false
	}
}

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	f := NewFake(start)
	require.Equal(t, start, f.Now())
	_, ok := f.Next()
	require.False(t, ok)

	now := f.NewTimer(0)
	require.True(t, fired(now), "a zero duration fires at once")
	a, b, c := f.NewTimer(time.Second), f.NewTimer(time.Minute), f.NewTimer(time.Hour)
	require.Equal(t, 3, f.Timers())
	next, ok := f.Next()
	require.True(t, ok)
	require.Equal(t, start.Add(time.Second), next)

	require.True(t, c.Stop())
	require.False(t, c.Stop(), "stopped already")
	f.Advance(30 * time.Second)
	require.True(t, fired(a))
	require.False(t, fired(b))
	require.False(t, a.Stop(), "fired already")
	require.Equal(t, 1, f.Timers())

	f.Set(start.Add(2 * time.Hour))
	require.True(t, fired(b))
	require.False(t, fired(c), "a stopped timer never fires")
	require.Zero(t, f.Timers())
	require.Equal(t, start.Add(2*time.Hour), f.Now())
}

func TestReal(t *testing.T) {
	t.Parallel()
	var c Clock = Real{}
	require.WithinDuration(t, time.Now(), c.Now(), time.Second)
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Fatal("timer did not fire")
	}
	require.True(t, c.NewTimer(time.Hour).Stop())
}
