package dispatcher

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
)

func TestScheduleNext(t *testing.T) {
	s := DefaultSchedule
	f := func(attempt int, retryAfter time.Duration, wantWait time.Duration, wantTier int) {
		t.Helper()
		wait, tier := s.next(attempt, retryAfter, 2*time.Hour)
		if wait != wantWait || tier != wantTier {
			t.Errorf("next(%d, %s) = %s, tier %d; want %s, tier %d", attempt, retryAfter, wait, tier, wantWait, wantTier)
		}
	}
	f(1, 0, time.Minute, 0)
	f(2, 0, 5*time.Minute, 1)
	f(4, 0, 2*time.Hour, 3)
	f(1, 30*time.Second, time.Minute, 0)  // never earlier than the schedule
	f(1, 3*time.Minute, 3*time.Minute, 1) // a longer Retry-After: the first tier that long
	f(2, 31*time.Minute, 31*time.Minute, 3)
	f(1, 10*time.Hour, 2*time.Hour, 3)      // capped
	f(3, 10*time.Minute, 30*time.Minute, 2) // shorter than this attempt's wait
}

func TestConfigFlagsAndValidate(t *testing.T) {
	var c Config
	var dc ClientConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	dc.RegisterFlags(fs)
	if err := fs.Parse([]string{"-dispatcher.retry-schedule=1s,2s,3s,4s", "-delivery.allow-networks=127.0.0.0/8, ::1/128", "-delivery.timeout=5s"}); err != nil {
		t.Fatal(err)
	}
	if c.RetrySchedule.String() != "1s,2s,3s,4s" || len(dc.AllowNetworks) != 2 || dc.Timeout != 5*time.Second || c.Concurrency != 512 {
		t.Fatalf("parsed %v %v %v %d", c.RetrySchedule.String(), dc.AllowNetworks, dc.Timeout, c.Concurrency)
	}
	c.Kafka, c.Endpoints, c.Delivery = &broker.Config{}, &endpoint.Config{Dev: true}, &dc
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := (&Config{Kafka: &broker.Config{}, Endpoints: &endpoint.Config{Dev: true}, Delivery: &ClientConfig{}}).Validate(); err != nil {
		t.Fatalf("zero values are the defaults: %v", err)
	}
	bad := c
	bad.RetrySchedule = Schedule{time.Second}
	bad.Concurrency = -1
	bad.LaneBuffer = -1
	bad.Delivery = &ClientConfig{Timeout: -1}
	err := bad.Validate()
	for _, want := range []string{"dispatcher.retry-schedule", "dispatcher.concurrency", "dispatcher.lane-buffer", "delivery.timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem with %s", err, want)
		}
	}
	greedy := c
	greedy.PartitionBuffer, greedy.LaneBuffer = 2000, 1001
	if err := greedy.Validate(); err == nil || !strings.Contains(err.Error(), "more than half of dispatcher.partition-buffer") {
		t.Errorf("lane buffer 1001 of 2000: Validate() = %v", err)
	}
	tiny := c
	tiny.PartitionBuffer, tiny.LaneBuffer = 2000, 100
	if err := tiny.Validate(); err == nil || !strings.Contains(err.Error(), "less than an eighth") {
		t.Errorf("lane buffer 100 of 2000: Validate() = %v", err)
	}
	small := c
	small.PartitionBuffer, small.LaneBuffer = 300, 0
	if err := small.Validate(); err != nil || small.withDefaults().LaneBuffer != 75 {
		t.Errorf("partition buffer 300: lane buffer %d, Validate() = %v; want a quarter, valid", small.withDefaults().LaneBuffer, err)
	}
	if err := fs.Parse([]string{"-delivery.allow-networks=not-a-cidr"}); err == nil {
		t.Error("a bad CIDR parsed")
	}
}

// Isolation (DESIGN.md guarantee 4) needs room on a partition for the other
// endpoints when some lanes are full: the default lane buffer must leave at
// least three quarters of the partition buffer to them, both from the flags
// and from a zero Config's documented defaults.
func TestDefaultLaneBufferLeavesRoomForOtherEndpoints(t *testing.T) {
	f := func(name string, c Config) {
		t.Helper()
		if c.LaneBuffer <= 0 || 4*c.LaneBuffer > c.PartitionBuffer {
			t.Errorf("%s: lane buffer %d with partition buffer %d: a few stuck endpoints would fill the partition", name, c.LaneBuffer, c.PartitionBuffer)
		}
	}
	var flags Config
	flags.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	f("flags", flags.withDefaults())
	f("zero value", Config{}.withDefaults())
}

// The zero value stands for the same defaults the flags show.
func TestZeroConfigHasTheFlagDefaults(t *testing.T) {
	var flags Config
	var delivery ClientConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	flags.RegisterFlags(fs)
	delivery.RegisterFlags(fs)
	if got, want := (Config{}).withDefaults(), flags.withDefaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("zero value with defaults:\n%+v\nflags:\n%+v", got, want)
	}
	if got, want := (ClientConfig{}).withDefaults(), delivery; !reflect.DeepEqual(got, want) {
		t.Fatalf("zero client config with defaults:\n%+v\nflags:\n%+v", got, want)
	}
}
