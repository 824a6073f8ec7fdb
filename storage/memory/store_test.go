package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	memstore "github.com/dtsched/scheduler/storage/memory"
	"github.com/dtsched/scheduler/storage/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) scheduler.Store { return memstore.New() })
}

// TestOutboxAcrossCompaction churns many tasks through the outbox, so that
// each shard's outbox list is compacted several times, and checks that
// Outbox returns exactly the tasks still in it, earliest first.
func TestOutboxAcrossCompaction(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	base := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	var want []string
	for i := range 20000 {
		task := &scheduler.Task{
			ID: uuid.NewString(), Type: "job", Queue: scheduler.DefaultQueue, State: scheduler.StatePending,
			CreatedAt: base, RunAt: base.Add(time.Duration(i) * time.Millisecond),
		}
		errs, err := s.Create(ctx, []*scheduler.Task{task})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		switch i % 100 {
		case 0: // stays in the outbox
			want = append(want, task.ID)
		case 1: // starts: leaves the outbox
			_, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w", Now: base})
			require.NoError(t, err)
		default: // its message is confirmed
			require.NoError(t, s.Published(ctx, scheduler.Message{TaskID: task.ID, Queue: task.Queue}))
		}
	}
	due, err := s.Outbox(ctx, base.Add(time.Hour), len(want)+10)
	require.NoError(t, err)
	got := make([]string, len(due))
	for i, task := range due {
		got[i] = task.ID
	}
	require.Equal(t, want, got)
}
