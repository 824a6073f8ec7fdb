package redisstore

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/storage/storetest"
)

// envCluster names the variable that points the Cluster test at a Redis
// Cluster: comma-separated addresses of some of its nodes.
const envCluster = "SCHEDULER_TEST_REDIS_CLUSTER_ADDRS"

// The conformance suite through a ClusterClient: every script touches
// keys of one hash slot only, else the cluster would refuse it with
// CROSSSLOT. Many prefixes spread the stores over the cluster's nodes.
func TestConformanceOnCluster(t *testing.T) {
	t.Parallel()
	addrs := os.Getenv(envCluster)
	if addrs == "" {
		t.Skipf("%s is not set: skipping the test against a Redis Cluster (e.g. %s=127.0.0.1:7001,127.0.0.1:7002)", envCluster, envCluster)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { _ = rdb.Close() })
	storetest.Run(t, func(t *testing.T) scheduler.Store {
		prefix := randomPrefix()
		s, err := New(rdb, WithPrefix(prefix))
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx := context.Background()
			err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
				keys, err := scanKeys(ctx, node, "{"+prefix+"}")
				if err != nil || len(keys) == 0 {
					return err
				}
				return node.Del(ctx, keys...).Err()
			})
			if err != nil {
				t.Logf("cleanup of %s: %v", prefix, err)
			}
		})
		return s
	})
}
