package dispatcher

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/schemas"
)

// Config is the dispatcher's configuration. A zero field means its
// documented default (withDefaults is the one place they are written);
// Kafka, Endpoints and Delivery are filled by the caller from the shared
// kafka.*, endpoints.* and delivery.* flags.
type Config struct {
	Kafka *broker.Config
	// Endpoints configures the endpoint store (shared endpoints.* flags).
	Endpoints *endpoint.Config
	// Delivery configures the HTTP client (shared delivery.* flags).
	Delivery *ClientConfig
	// Dev is development mode (the shared -dev flag).
	Dev bool

	// OpsListen serves /metrics, /healthz and /readyz. Default 127.0.0.1:9102.
	OpsListen string
	// Group is the Kafka consumer group. Default "zaits-dispatcher".
	Group string
	// RetrySchedule is the wait after each failed attempt but the last, one
	// per delay topic (schemas.RetryTopics). Default 1m,5m,30m,2h: five attempts.
	RetrySchedule Schedule
	// RetryAfterMax caps a 429/503 Retry-After. Default 2h.
	RetryAfterMax time.Duration
	// Concurrency bounds the attempts in flight over all partitions. Default 512.
	Concurrency int
	// PartitionBuffer bounds the tasks read but not finished per partition. Default 2000.
	PartitionBuffer int
	// PartitionBufferBytes bounds their bodies' bytes per partition. Default 16 MiB.
	PartitionBufferBytes int
	// LaneBuffer bounds one endpoint's tasks held in memory per partition;
	// its later tasks are read again from Kafka once the lane has worked
	// through them, so a slow endpoint never fills the partition's buffer.
	// Default: a quarter of PartitionBuffer (500), so a few stuck endpoints
	// on one partition still leave room for the others. At most half of
	// PartitionBuffer (isolation) and at least an eighth: when the
	// dispatcher is slower than its input, fewer than PartitionBuffer ÷
	// LaneBuffer busy endpoints on a partition fill their lanes before the
	// partition buffer fills, and each then re-reads the partition
	// (zaits_dispatcher_lane_refill_messages_total), so that ratio bounds
	// the re-reads under overload (at 1/20, bench e2e re-read 11 messages
	// per attempt and fell behind).
	LaneBuffer int
	// CommitInterval is how often finished offsets are committed. Default 1s.
	CommitInterval time.Duration
	// SessionTimeout is the consumer group session timeout. Default 10s.
	SessionTimeout time.Duration
}

// DefaultSchedule is the seed's retry schedule.
var DefaultSchedule = Schedule{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Kafka = broker.Defaulted(c.Kafka)
	flagenv.Default(&c.OpsListen, "127.0.0.1:9102")
	flagenv.Default(&c.Group, "zaits-dispatcher")
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = append(Schedule(nil), DefaultSchedule...)
	}
	flagenv.Default(&c.RetryAfterMax, 2*time.Hour)
	flagenv.Default(&c.Concurrency, 512)
	flagenv.Default(&c.PartitionBuffer, 2000)
	flagenv.Default(&c.PartitionBufferBytes, 16<<20)
	flagenv.Default(&c.LaneBuffer, max(1, c.PartitionBuffer/4))
	flagenv.Default(&c.CommitInterval, time.Second)
	flagenv.Default(&c.SessionTimeout, 10*time.Second)
	return c
}

// RegisterFlags registers the dispatcher.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.withDefaults()
	fs.StringVar(&c.OpsListen, "dispatcher.ops-listen", d.OpsListen, "address of the dispatcher's /metrics, /healthz and /readyz")
	fs.StringVar(&c.Group, "dispatcher.group", d.Group, "Kafka consumer group of the dispatchers")
	c.RetrySchedule = d.RetrySchedule
	fs.Var(&c.RetrySchedule, "dispatcher.retry-schedule", "waits after failed attempts 1..4, one per delay topic (the 5th failure is final)")
	fs.DurationVar(&c.RetryAfterMax, "dispatcher.retry-after-max", d.RetryAfterMax, "cap on a 429/503 Retry-After")
	fs.IntVar(&c.Concurrency, "dispatcher.concurrency", d.Concurrency, "delivery attempts in flight at most, over all partitions")
	fs.IntVar(&c.PartitionBuffer, "dispatcher.partition-buffer", d.PartitionBuffer, "tasks read but not finished per partition at most (backpressure)")
	fs.IntVar(&c.PartitionBufferBytes, "dispatcher.partition-buffer-bytes", d.PartitionBufferBytes, "bytes of task bodies read but not finished per partition at most")
	fs.IntVar(&c.LaneBuffer, "dispatcher.lane-buffer", 0, "tasks of one endpoint held in memory per partition at most, at most half of dispatcher.partition-buffer; the rest are read again from Kafka when the endpoint catches up (0: a quarter of dispatcher.partition-buffer)")
	fs.DurationVar(&c.CommitInterval, "dispatcher.commit-interval", d.CommitInterval, "how often finished offsets are committed")
	fs.DurationVar(&c.SessionTimeout, "dispatcher.session-timeout", d.SessionTimeout, "consumer group session timeout (6s..5m)")
}

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error {
	return c.withDefaults().validate()
}

func (c Config) validate() error {
	var errs []error
	if c.Kafka == nil || c.Endpoints == nil || c.Delivery == nil {
		errs = append(errs, errors.New("dispatcher: kafka, endpoints or delivery configuration missing"))
	} else {
		errs = append(errs, c.Kafka.Validate(), c.Endpoints.Validate(), c.Delivery.Validate())
	}
	if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
		errs = append(errs, fmt.Errorf("dispatcher.ops-listen: %q is not host:port: %w", c.OpsListen, err))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("dispatcher.group: required"))
	}
	if len(c.RetrySchedule) != len(schemas.RetryTopics) {
		errs = append(errs, fmt.Errorf("dispatcher.retry-schedule: %d waits, want %d (one per delay topic)", len(c.RetrySchedule), len(schemas.RetryTopics)))
	}
	for _, w := range c.RetrySchedule {
		if w <= 0 {
			errs = append(errs, fmt.Errorf("dispatcher.retry-schedule: wait %s is not positive", w))
		}
	}
	if c.RetryAfterMax < 0 {
		errs = append(errs, fmt.Errorf("dispatcher.retry-after-max: negative %s", c.RetryAfterMax))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("dispatcher.concurrency: must be positive, got %d", c.Concurrency))
	}
	if c.PartitionBuffer < 1 {
		errs = append(errs, fmt.Errorf("dispatcher.partition-buffer: must be positive, got %d", c.PartitionBuffer))
	}
	if c.PartitionBufferBytes < 1 {
		errs = append(errs, fmt.Errorf("dispatcher.partition-buffer-bytes: must be positive, got %d", c.PartitionBufferBytes))
	}
	if c.LaneBuffer < 1 {
		errs = append(errs, fmt.Errorf("dispatcher.lane-buffer: must be positive, got %d", c.LaneBuffer))
	} else if c.PartitionBuffer >= 1 && 2*c.LaneBuffer > c.PartitionBuffer {
		errs = append(errs, fmt.Errorf("dispatcher.lane-buffer: %d is more than half of dispatcher.partition-buffer (%d): one stuck endpoint could take the partition's buffer from the others", c.LaneBuffer, c.PartitionBuffer))
	} else if c.PartitionBuffer >= 1 && 8*c.LaneBuffer < c.PartitionBuffer {
		errs = append(errs, fmt.Errorf("dispatcher.lane-buffer: %d is less than an eighth of dispatcher.partition-buffer (%d): under overload every full lane re-reads its partition, up to partition-buffer/lane-buffer times the reads", c.LaneBuffer, c.PartitionBuffer))
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, fmt.Errorf("dispatcher.commit-interval: must be positive, got %s", c.CommitInterval))
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("dispatcher.session-timeout: must be 6s..5m, got %s", c.SessionTimeout))
	}
	return errors.Join(errs...)
}

// Schedule is the retry schedule: Schedule[n-1] is the wait after failed attempt n.
type Schedule []time.Duration

// String formats the schedule as the flag takes it.
func (s *Schedule) String() string {
	var parts []string
	for _, d := range *s {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, ",")
}

// Set parses comma-separated durations.
func (s *Schedule) Set(v string) error {
	var out Schedule
	for _, f := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		out = append(out, d)
	}
	*s = out
	return nil
}

// MaxAttempts is the number of attempts a task gets: one more than the waits.
func (s Schedule) MaxAttempts() int { return len(s) + 1 }

// next returns, after failed attempt n (< MaxAttempts), how long to wait and
// through which delay topic (an index into schemas.RetryTopics). The wait is
// the schedule's, or a longer Retry-After capped at retryAfterMax. A longer
// wait moves to the first tier whose wait is at least as long, so a delay
// topic's messages stay roughly in due order and one task never holds up
// the tasks behind it for longer than their own tier's wait.
func (s Schedule) next(n int, retryAfter, retryAfterMax time.Duration) (wait time.Duration, tier int) {
	tier = n - 1
	wait = s[tier]
	if ra := min(retryAfter, retryAfterMax); ra > wait {
		wait = ra
	}
	for tier < len(s)-1 && s[tier] < wait {
		tier++
	}
	return wait, tier
}
