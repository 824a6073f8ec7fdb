package membroker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// TestReadySetOrder checks the order the ready set hands items out in:
// highest priority first, lowest sequence number first within a priority,
// a requeued item back at its old place, across the compaction of a long
// FIFO.
func TestReadySetOrder(t *testing.T) {
	var r readySet
	var seq uint64
	add := func(p scheduler.Priority) item {
		seq++
		it := item{msg: scheduler.Message{Priority: p}, seq: seq}
		r.push(it)
		return it
	}
	const n = 3000
	low := make([]item, n)
	for i := range low {
		low[i] = add(1)
	}
	high := add(8)
	require.Equal(t, n+1, r.len())
	require.Equal(t, high, r.pop(), "highest priority first")

	// Take most of the low FIFO (compacting it on the way), then requeue
	// two of the taken items out of order: each goes back to its place.
	for i := range n - 10 {
		require.Equal(t, low[i].seq, r.pop().seq)
	}
	r.push(low[n-12])
	r.push(low[n-20])
	later := add(1)
	require.Equal(t, 13, r.len())
	want := append([]item{low[n-20], low[n-12]}, low[n-10:]...)
	want = append(want, later)
	for _, w := range want {
		require.Equal(t, w.seq, r.pop().seq)
	}
	require.Zero(t, r.len())
}
