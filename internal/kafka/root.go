// Package kafka holds what every stage needs to speak to the Kafka-protocol
// backbone: the embedded broker (franz-go's kfake, persisted under
// data_dir), client options, and topic creation. Stages use the franz-go
// client exactly as they would against a real cluster.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/reporter"
)

// Broker is the embedded single-node Kafka-protocol broker.
type Broker struct {
	cfg     Configuration
	dataDir string
	logger  *slog.Logger
	cluster *kfake.Cluster
	stop    chan struct{}
	done    chan struct{}
	disk    diskWatch
}

// ReportTo makes the broker report on /readyz (component "broker"):
// ready once started, not ready while its disk is full. Call it before
// Start.
func (b *Broker) ReportTo(r *reporter.Reporter) { b.disk.ready = r.Readiness("broker") }

// Fault returns why the broker cannot store records right now (a full
// disk), or nil.
func (b *Broker) Fault() error { return b.disk.current() }

// NewBroker prepares an embedded broker that persists under dataDir/kafka.
func NewBroker(logger *slog.Logger, cfg Configuration, dataDir string) (*Broker, error) {
	if !cfg.Embedded() {
		return nil, errors.New("kafka.brokers is set: no embedded broker to start")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{cfg: cfg, dataDir: filepath.Join(dataDir, "kafka"), logger: logger}
	b.disk.b, b.disk.quit = b, make(chan struct{})
	return b, nil
}

// Start listens on kafka.embedded_listen and reloads persisted topics,
// records and committed offsets.
func (b *Broker) Start() error {
	host, portStr, err := net.SplitHostPort(b.cfg.EmbeddedListen)
	if err != nil {
		return fmt.Errorf("kafka.embedded_listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("kafka.embedded_listen: port %q: %w", portStr, err)
	}
	if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		return fmt.Errorf("unable to create broker data directory: %w", err)
	}
	if err := checkWritable(b.dataDir); err != nil {
		return err
	}
	// Fail early with a clear message when the port is taken: kfake's own
	// error does not say which key to change.
	if l, err := net.Listen("tcp", b.cfg.EmbeddedListen); err != nil {
		return fmt.Errorf("kafka.embedded_listen: cannot listen on %s (is another broker or flowaudit running? choose another port): %w", b.cfg.EmbeddedListen, err)
	} else {
		l.Close()
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
		kfake.DataDir(b.dataDir),
		kfake.DefaultNumPartitions(int(b.cfg.Partitions)),
		kfake.ClusterID("flowaudit-embedded"),
		kfake.AllowAutoTopicCreation(),
		kfake.WithLogger(&brokerLogger{log: b.logger, onError: b.disk.onError}),
	}
	if b.cfg.EmbeddedSyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("unable to start embedded broker: %w", err)
	}
	b.cluster = c
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	if b.disk.ready != nil {
		b.disk.ready.Ready()
	}
	go b.housekeeping()
	b.logger.Info("embedded Kafka broker started", "listen", c.ListenAddrs(), "data_dir", b.dataDir, "sync_writes", b.cfg.EmbeddedSyncWrites)
	return nil
}

// housekeeping compacts compacted topics and enforces retention every
// few minutes: a real cluster's log cleaner does this on its own, the
// embedded broker only when told.
func (b *Broker) housekeeping() {
	defer close(b.done)
	t := time.NewTicker(housekeepingInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.cluster.Compact()
			b.cluster.ApplyRetention()
		}
	}
}

// housekeepingInterval is how often the embedded broker compacts and
// applies retention.
const housekeepingInterval = 2 * time.Minute

// Stop closes the broker; kfake persists its state on close.
func (b *Broker) Stop() error {
	b.disk.once.Do(func() { close(b.disk.quit) })
	if b.stop != nil {
		close(b.stop)
		<-b.done
	}
	if b.cluster != nil {
		b.cluster.Close()
		b.logger.Info("embedded Kafka broker stopped")
	}
	return nil
}

// Addrs returns where the broker listens.
func (b *Broker) Addrs() []string { return b.cluster.ListenAddrs() }

// ClientOptions returns the franz-go options every flowaudit client shares.
func ClientOptions(cfg Configuration, role string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(cfg.SeedBrokers()...),
		kgo.ClientID(cfg.ClientID + "-" + role),
		// Retry broker outages for as long as it takes: produce retries
		// are unbounded by default, and requests get the same treatment
		// so stages pause rather than fail while the broker is away.
		kgo.RequestRetries(1 << 30),
		kgo.RetryTimeout(0),
		// kafka.produce_linger, for every producer (the flow collector
		// overrides it with ingest.flows.flush_interval).
		kgo.ProducerLinger(cfg.ProduceLinger),
		// kafka.compression, for every producer.
		kgo.ProducerBatchCompression(cfg.Codec()),
	}
}

// EnsureTopics creates the topics (full names) that do not exist yet with
// kafka.partitions partitions. It waits for the broker for up to timeout.
func EnsureTopics(ctx context.Context, cfg Configuration, logger *slog.Logger, timeout time.Duration, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.SeedBrokers()...), kgo.ClientID(cfg.ClientID+"-admin"))
	if err != nil {
		return fmt.Errorf("unable to create Kafka admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rf := cfg.ReplicationFactor
	if cfg.Embedded() {
		rf = 1
	}
	for {
		var configs map[string]*string
		if cfg.Retention > 0 {
			ms := strconv.FormatInt(cfg.Retention.Milliseconds(), 10)
			configs = map[string]*string{"retention.ms": &ms}
		}
		resp, err := adm.CreateTopics(ctx, cfg.Partitions, rf, configs, topics...)
		if err == nil {
			var errs []error
			for _, r := range resp.Sorted() {
				switch {
				case r.Err == nil:
					logger.Info("created Kafka topic", "topic", r.Topic, "partitions", cfg.Partitions)
				case errors.Is(r.Err, kerr.TopicAlreadyExists):
				default:
					errs = append(errs, fmt.Errorf("topic %s: %w", r.Topic, r.Err))
				}
			}
			return errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unable to create topics on %v (is kafka.brokers right and the cluster up?): %w", cfg.SeedBrokers(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
