package testutil

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// StartBroker starts franz-go's kfake Kafka-protocol broker in process on
// a free loopback port, seeded with topics (partitions each), and closes
// it when the test ends. Use the returned cluster's ControlKey for fault
// injection.
func StartBroker(t testing.TB, partitions int32, topics ...string) (*kfake.Cluster, string) {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(int(partitions))}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake broker: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}
