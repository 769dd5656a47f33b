package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// Client returns an admin client for the configured brokers. Each call makes
// its own transport, so a client never shares pooled connections with another.
func (c *Config) Client() *kafka.Client {
	return &kafka.Client{
		Addr:      kafka.TCP(c.BrokerList()...),
		Timeout:   10 * time.Second,
		Transport: c.transport(),
	}
}

// metadataTTL bounds how long a transport's view of the partition leaders
// may be stale. kafka-go refreshes a transport's cached metadata only on a
// timer, at a random time within the TTL (transport.go:589-639), never
// after a failed request: produce and fetch requests keep going to a dead
// leader until that timer fires, also after Kafka has moved its partitions
// to a new leader. With 1 s they find the new leader within a second; the
// refresh asks for this prefix's topics only (MetadataTopics), so it stays
// small. See deploy/chaos/FINDINGS.md.
const metadataTTL = time.Second

// transport returns a new kafka-go transport for the configured brokers.
func (c *Config) transport() *kafka.Transport {
	topics := make([]string, 0, len(schemas.AllTopics))
	for _, t := range schemas.AllTopics {
		topics = append(topics, c.Topic(t.Name))
	}
	return &kafka.Transport{
		DialTimeout:    c.DialTimeout,
		IdleTimeout:    30 * time.Second,
		MetadataTTL:    metadataTTL,
		MetadataTopics: topics,
		ClientID:       "zaits",
	}
}

// Ping opens a fresh connection to a broker and asks for the metadata of
// topic (a full name); it fails unless the broker answers and the topic
// exists. It is the Kafka readiness check. (kafka.Client would answer
// metadata requests from its transport's cache, even with the broker gone.)
func (c *Config) Ping(ctx context.Context, topic string) error {
	d := kafka.Dialer{Timeout: c.DialTimeout, ClientID: "zaits-ping"}
	var errs []error
	for _, addr := range c.BrokerList() {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		_, err = conn.ReadPartitions(topic)
		conn.Close()
		if err != nil {
			return fmt.Errorf("kafka metadata of %s from %s: %w", topic, addr, err)
		}
		return nil
	}
	return fmt.Errorf("kafka: no broker answers: %w", errors.Join(errs...))
}

// ErrPartitionMismatch is returned by EnsureTopics when an existing topic has
// a partition count other than the configured one.
var ErrPartitionMismatch = errors.New("partition count differs from configuration")

// EnsureTopics creates every topic of schemas.AllTopics that does not exist
// yet, with the configured partition counts, and verifies the ones that do.
// It is idempotent. A partition mismatch is permanent: keys map to partitions,
// so silently using a different count would break per-endpoint ordering.
func EnsureTopics(ctx context.Context, cfg *Config) error {
	cfg = Defaulted(cfg)
	cl := cfg.Client()
	want := map[string]int{}
	var topics []kafka.TopicConfig
	for _, t := range schemas.AllTopics {
		name := cfg.Topic(t.Name)
		want[name] = cfg.Partitions[t.Name]
		tc := kafka.TopicConfig{Topic: name, NumPartitions: cfg.Partitions[t.Name], ReplicationFactor: cfg.ReplicationFactor}
		if !t.Compacted {
			tc.ConfigEntries = append(tc.ConfigEntries,
				kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(cfg.Retention[t.Name].Milliseconds(), 10)})
		}
		if t.Compacted {
			tc.ConfigEntries = append(tc.ConfigEntries,
				kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"},
				kafka.ConfigEntry{ConfigName: "min.cleanable.dirty.ratio", ConfigValue: "0.1"},
				kafka.ConfigEntry{ConfigName: "segment.ms", ConfigValue: "3600000"})
		}
		if cfg.ReplicationFactor > 1 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: "2"})
		}
		topics = append(topics, tc)
	}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, e)
		}
	}
	return verifyPartitions(ctx, cfg, cl, want)
}

// verifyPartitions checks the partition counts and returns only once every
// partition of every topic has a leader that serves it: a consumer group
// that joins while a topic is still being created gets an empty assignment
// and kafka-go never rebalances it (segmentio/kafka-go#585, #1314).
// Metadata is read on a fresh connection each time, because kafka.Client
// answers metadata requests from its transport's cache.
func verifyPartitions(ctx context.Context, cfg *Config, cl *kafka.Client, want map[string]int) error {
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for {
		pending, err := unservedPartitions(ctx, cfg, cl, names, want)
		if err != nil {
			return err
		}
		if pending == nil {
			return nil
		}
		if !retry.Sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("partitions not served yet (%v): %w", pending, ctx.Err())
		}
	}
}

// unservedPartitions returns a non-nil reason while a partition lacks a
// leader or cannot list its offsets; an error is permanent (a partition
// count mismatch).
func unservedPartitions(ctx context.Context, cfg *Config, cl *kafka.Client, names []string, want map[string]int) (pending error, err error) {
	d := kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: "zaits-provision"}
	conn, err := d.DialContext(ctx, "tcp", cfg.BrokerList()[0])
	if err != nil {
		return err, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	parts, err := conn.ReadPartitions(names...)
	conn.Close()
	if err != nil {
		return err, nil
	}
	got := map[string]int{}
	reqs := map[string][]kafka.OffsetRequest{}
	for _, p := range parts {
		got[p.Topic]++
		if p.Leader.Host == "" || p.Error != nil {
			return fmt.Errorf("%s/%d has no leader yet", p.Topic, p.ID), nil
		}
		reqs[p.Topic] = append(reqs[p.Topic], kafka.LastOffsetOf(p.ID))
	}
	var errs []error
	for _, n := range names {
		switch g := got[n]; {
		case g == 0:
			return fmt.Errorf("%s has no partitions yet", n), nil
		case g != want[n]:
			errs = append(errs, fmt.Errorf("topic %s has %d partitions but the configuration says %d; keys map to partitions, so either set the flag to %d or recreate the topic: %w",
				n, g, want[n], g, ErrPartitionMismatch))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return err, nil
	}
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Errorf("%s/%d: %w", t, p.Partition, p.Error), nil
			}
		}
	}
	return nil, nil
}

// WaitAndEnsureTopics retries EnsureTopics with backoff until it succeeds,
// the error is permanent (a partition mismatch), or StartupTimeout passes.
func WaitAndEnsureTopics(ctx context.Context, cfg *Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()
	backoff := retry.Backoff{Min: 200 * time.Millisecond}
	for {
		err := EnsureTopics(ctx, cfg)
		if err == nil || errors.Is(err, ErrPartitionMismatch) {
			return err
		}
		wait := backoff.Next()
		log.Warn("kafka not ready for topic provisioning, retrying", "brokers", cfg.Brokers, "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return fmt.Errorf("kafka at %s not ready within %s: %w", cfg.Brokers, cfg.StartupTimeout, err)
		}
	}
}

// DeleteTopics removes every topic of the configuration's prefix (tests only).
func DeleteTopics(ctx context.Context, cfg *Config) error {
	var names []string
	for _, t := range schemas.AllTopics {
		names = append(names, cfg.Topic(t.Name))
	}
	resp, err := cfg.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	if err != nil {
		return err
	}
	var errs []error
	for n, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafka.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete %s: %w", n, e))
		}
	}
	return errors.Join(errs...)
}

// NewWriter returns a writer for topic (a full name) that waits for acks=all,
// hashes keys to partitions the way every Kafka client does (murmur2, so a
// producer in another language picks the same partition), and flushes
// batches after at most batchTimeout.
func (c *Config) NewWriter(topic string, batchTimeout time.Duration) *kafka.Writer {
	return &kafka.Writer{
		Addr:            kafka.TCP(c.BrokerList()...),
		Topic:           topic,
		Balancer:        &kafka.Murmur2Balancer{},
		RequiredAcks:    kafka.RequireAll,
		BatchTimeout:    batchTimeout,
		BatchSize:       1000,
		BatchBytes:      8 << 20,
		MaxAttempts:     5,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		Transport:       c.transport(),
	}
}

// RandomSuffix returns n lowercase letters, for unique test topic and group names.
func RandomSuffix(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	var b strings.Builder
	for range n {
		b.WriteByte(letters[rand.IntN(len(letters))])
	}
	return b.String()
}

// Offsets returns, per partition of topic (a full name), the first offset
// and the high-water mark (the offset the next message will get).
func Offsets(ctx context.Context, cl *kafka.Client, topic string) (first, last map[int]int64, err error) {
	// A broker that just started (or a topic just created) can drop the
	// connection or answer "not leader" for a moment: retry for a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	backoff := retry.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	for {
		first, last, err = offsets(ctx, cl, topic)
		if err == nil || time.Now().After(deadline) {
			return first, last, err
		}
		if !backoff.Wait(ctx) {
			return nil, nil, err
		}
	}
}

func offsets(ctx context.Context, cl *kafka.Client, topic string) (first, last map[int]int64, err error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, nil, fmt.Errorf("metadata of %s: %v", topic, md.Topics)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	first, last = map[int]int64{}, map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, nil, fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		first[po.Partition], last[po.Partition] = po.FirstOffset, po.LastOffset
	}
	return first, last, nil
}
