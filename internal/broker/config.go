// Package broker connects the components to Kafka: configuration shared by
// every component, readiness pings, topic provisioning and writers with the
// settings the guarantees need (acks=all, short batch timeout).
package broker

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/schemas"
)

// Config is the Kafka configuration shared by every component. A zero field
// means its documented default (WithDefaults is the one place they are
// written); a topic missing from Partitions has its default count.
type Config struct {
	// Brokers is a comma-separated list of bootstrap addresses. Default 127.0.0.1:9092.
	Brokers string
	// TopicPrefix is <p> in "<p>.events". Default "zaits".
	TopicPrefix string
	// ReplicationFactor for created topics. Default 1 (one local broker);
	// production clusters use 3.
	ReplicationFactor int
	// Partitions per topic name (without prefix). Defaults suit one 2-core
	// machine; keys decide partitions, so counts are fixed once topics exist.
	Partitions map[string]int
	// Retention per topic name (without prefix) of the topics that delete
	// by time, set as retention.ms when the topic is created: the event log
	// and the dead letters keep 30 days (resend, recover, replay and redrive
	// read them), the rest 7 days. A topic missing has its default.
	Retention map[string]time.Duration
	// DialTimeout bounds connecting to a broker. Default 3s.
	DialTimeout time.Duration
	// StartupTimeout bounds waiting for Kafka at start-up. Default 60s.
	StartupTimeout time.Duration
}

// DefaultPartitions are the partition counts for one machine.
func DefaultPartitions() map[string]int {
	return map[string]int{
		schemas.TopicEvents:        8,
		schemas.TopicEventsInvalid: 1,
		schemas.TopicDeliveries:    16,
		schemas.TopicRetry1m:       4,
		schemas.TopicRetry5m:       4,
		schemas.TopicRetry30m:      4,
		schemas.TopicRetry2h:       4,
		schemas.TopicDead:          4,
		schemas.TopicAttempts:      8,
		schemas.TopicEndpoints:     1,
		schemas.TopicJobs:          4,
	}
}

// DefaultRetention is how long each time-retained topic keeps its messages.
func DefaultRetention() map[string]time.Duration {
	const day = 24 * time.Hour
	return map[string]time.Duration{
		schemas.TopicEvents:        30 * day,
		schemas.TopicEventsInvalid: 30 * day,
		schemas.TopicDeliveries:    7 * day,
		schemas.TopicRetry1m:       7 * day,
		schemas.TopicRetry5m:       7 * day,
		schemas.TopicRetry30m:      7 * day,
		schemas.TopicRetry2h:       7 * day,
		schemas.TopicDead:          30 * day,
		schemas.TopicAttempts:      7 * day,
	}
}

// WithDefaults returns a copy of c with every zero field set to its default
// (Partitions is copied, with the default count for each missing topic).
func (c Config) WithDefaults() Config {
	flagenv.Default(&c.Brokers, "127.0.0.1:9092")
	flagenv.Default(&c.TopicPrefix, "zaits")
	flagenv.Default(&c.ReplicationFactor, 1)
	flagenv.Default(&c.DialTimeout, 3*time.Second)
	flagenv.Default(&c.StartupTimeout, 60*time.Second)
	parts := DefaultPartitions()
	for k, v := range c.Partitions {
		parts[k] = v
	}
	c.Partitions = parts
	ret := DefaultRetention()
	for k, v := range c.Retention {
		ret[k] = v
	}
	c.Retention = ret
	return c
}

// RegisterFlags registers the kafka.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := Config{}.WithDefaults()
	fs.StringVar(&c.Brokers, "kafka.brokers", d.Brokers, "comma-separated Kafka bootstrap brokers")
	fs.StringVar(&c.TopicPrefix, "kafka.topic-prefix", d.TopicPrefix, "prefix of every topic name (<prefix>.events, ...)")
	fs.IntVar(&c.ReplicationFactor, "kafka.replication-factor", d.ReplicationFactor, "replication factor of created topics (3 in production)")
	fs.DurationVar(&c.DialTimeout, "kafka.dial-timeout", d.DialTimeout, "timeout for connecting to a broker")
	fs.DurationVar(&c.StartupTimeout, "kafka.startup-timeout", d.StartupTimeout, "how long to wait for Kafka at start-up")
	c.Partitions, c.Retention = d.Partitions, d.Retention
	for _, t := range schemas.AllTopics {
		fs.Var(partitionsValue{c.Partitions, t.Name}, "kafka.partitions."+t.Name, "partitions of <prefix>."+t.Name)
		if !t.Compacted {
			fs.Var(retentionValue{c.Retention, t.Name}, "kafka.retention."+t.Name, "how long <prefix>."+t.Name+" keeps messages (retention.ms, set when the topic is created)")
		}
	}
}

// retentionValue is the flag.Value of one topic's entry in Config.Retention.
type retentionValue struct {
	m    map[string]time.Duration
	name string
}

func (v retentionValue) String() string {
	if v.m == nil {
		return ""
	}
	return v.m[v.name].String()
}

func (v retentionValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	v.m[v.name] = d
	return nil
}

// partitionsValue is the flag.Value of one topic's entry in Config.Partitions.
type partitionsValue struct {
	m    map[string]int
	name string
}

func (v partitionsValue) String() string {
	if v.m == nil {
		return ""
	}
	return strconv.Itoa(v.m[v.name])
}

func (v partitionsValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number: %q", s)
	}
	v.m[v.name] = n
	return nil
}

var prefixRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,100}$`)

// Validate reports every problem with the configuration at once (zero
// values stand for the defaults).
func (c *Config) Validate() error {
	d := c.WithDefaults()
	c = &d
	var errs []error
	if len(c.BrokerList()) == 0 {
		errs = append(errs, errors.New("kafka.brokers: at least one broker address is required"))
	}
	if !prefixRE.MatchString(c.TopicPrefix) {
		errs = append(errs, fmt.Errorf("kafka.topic-prefix: %q must be 1-100 characters of letters, digits, '_' or '-'", c.TopicPrefix))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("kafka.replication-factor: must be at least 1, got %d", c.ReplicationFactor))
	}
	for _, t := range schemas.AllTopics {
		if n := c.Partitions[t.Name]; n < 1 || n > 10000 {
			errs = append(errs, fmt.Errorf("kafka.partitions.%s: must be 1..10000, got %d", t.Name, n))
		}
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, errors.New("kafka.dial-timeout: must be positive"))
	}
	for _, t := range schemas.AllTopics {
		if r := c.Retention[t.Name]; !t.Compacted && (r < time.Hour || r > 10*365*24*time.Hour) {
			errs = append(errs, fmt.Errorf("kafka.retention.%s: must be 1h..10y, got %s", t.Name, r))
		}
	}
	return errors.Join(errs...)
}

// BrokerList returns the non-empty broker addresses.
func (c *Config) BrokerList() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Topic returns the full name of topic name under this configuration's prefix.
func (c *Config) Topic(name string) string { return schemas.Topic(c.TopicPrefix, name) }

// Defaulted returns a pointer to a copy of c with its defaults, or nil for
// a nil c: what each component's configuration keeps.
func Defaulted(c *Config) *Config {
	if c == nil {
		return nil
	}
	d := c.WithDefaults()
	return &d
}
