package memstore_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	memstore "github.com/dtsched/scheduler/storage/memory"
	"github.com/dtsched/scheduler/storage/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) scheduler.Store { return memstore.New() })
}
