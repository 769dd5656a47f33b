package broker_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// TestGroupRejoinsWithoutWaitingForItsOldSession restarts the private broker
// under a group member. kafka-go gives its member id up while the
// coordinator is unreachable and joins again as a new member; the
// restarted coordinator still holds the old member, and without Group's
// eviction the rejoin waits for that member's session (30 s here) to
// expire. With it the next generation comes within seconds of the broker
// answering again.
func TestGroupRejoinsWithoutWaitingForItsOldSession(t *testing.T) {
	k := testenv.StartKafka(t)
	cfg := &broker.Config{}
	cfg.RegisterFlags(flag.NewFlagSet("test", flag.ContinueOnError))
	cfg.Brokers = k.Addr
	cfg.TopicPrefix = "group-" + broker.RandomSuffix(6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const session = 30 * time.Second
	g, err := cfg.NewGroup(kafka.ConsumerGroupConfig{
		ID:                cfg.TopicPrefix + ".group",
		Topics:            []string{cfg.Topic(schemas.TopicDeliveries)},
		Dialer:            &kafka.Dialer{Timeout: cfg.DialTimeout},
		SessionTimeout:    session,
		HeartbeatInterval: time.Second,
		RebalanceTimeout:  session,
		JoinGroupBackoff:  time.Second,
	}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gens := make(chan *kafka.Generation, 10)
	go func() {
		for {
			gen, err := g.Next(context.Background())
			if err != nil {
				if ctx.Err() != nil || err == kafka.ErrGroupClosed {
					return
				}
				continue
			}
			gens <- gen
		}
	}()
	first := <-gens
	t.Logf("generation %d, member %s", first.ID, first.MemberID)

	k.Stop()
	k.Start()
	back := time.Now()
	select {
	case gen := <-gens:
		took := time.Since(back)
		t.Logf("generation %d (member %s) %s after the broker answered again", gen.ID, gen.MemberID, took.Round(time.Millisecond))
		if gen.MemberID == first.MemberID {
			t.Fatalf("kafka-go kept its member id: the restart did not exercise the rejoin as a new member")
		}
		if took > session/2 {
			t.Fatalf("the rejoin took %s: it waited for the old member's session (%s)", took.Round(time.Millisecond), session)
		}
	case <-time.After(2 * session):
		t.Fatalf("no generation within %s of the broker answering again", 2*session)
	}
}
