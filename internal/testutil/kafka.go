package testutil

import (
	"fmt"
	"net"
	"testing"
	"time"

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

// PersistentBroker is a kfake broker on a fixed loopback port whose
// state (topics, records, committed offsets) lives in a directory, so a
// test can stop it and start it again where clients expect it: a broker
// restart.
type PersistentBroker struct {
	t          testing.TB
	port       int
	dir        string
	partitions int32
	// Cluster is the running broker (nil while stopped); use its
	// ControlKey for fault injection. Replaced by every Start.
	Cluster *kfake.Cluster
	Addr    string
}

// StartPersistentBroker starts a PersistentBroker; it is closed when the
// test ends.
func StartPersistentBroker(t testing.TB, partitions int32) *PersistentBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b := &PersistentBroker{t: t, port: port, dir: t.TempDir(), partitions: partitions, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// Start starts the broker (again) on its port from its directory.
func (b *PersistentBroker) Start() {
	b.t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b.Cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(b.port), kfake.DataDir(b.dir),
			kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(int(b.partitions)))
		if err == nil || time.Now().After(deadline) {
			break // the port may take a moment to be free again
		}
	}
	if err != nil {
		b.t.Fatalf("starting kfake broker on %s: %v", b.Addr, err)
	}
}

// Stop closes the broker, persisting its state; Start resumes it.
func (b *PersistentBroker) Stop() {
	if b.Cluster != nil {
		b.Cluster.Close()
		b.Cluster = nil
	}
}
