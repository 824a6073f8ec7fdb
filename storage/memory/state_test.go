package memstore

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// Counts names each count by scheduler.States[stateIndex(state)].
func TestStateIndexFollowsStates(t *testing.T) {
	require.Len(t, scheduler.States, numStates)
	for i, st := range scheduler.States {
		require.Equal(t, i, stateIndex(st), st)
	}
}
