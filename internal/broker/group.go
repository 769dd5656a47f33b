package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Group is a kafka-go consumer group that does not leave a ghost of itself
// behind when its coordinator dies.
//
// When kafka-go (v0.4.51) cannot set up a generation — in particular when
// the coordinator cannot be reached, as after the broker coordinating the
// group was killed — it tries to leave the group, which fails against the
// dead coordinator, and forgets its member id (consumergroup.go:747-756,
// 783-789); its next attempt joins as a new member. The coordinator that
// takes over once the dead broker is fenced loads the group with the old
// member still in it, and the new member's join waits until that member's
// session expires (the full session timeout, counted from the load) before
// the rebalance completes: deliveries stopped for the fencing time plus the
// session timeout (19–20 s on Kafka's defaults). Group remembers the member
// id of its last generation and, once kafka-go has reported that it gave
// the id up, removes that member itself (LeaveGroup through the admin
// client, retried until the coordinator shows it gone), so the rebalance completes
// as soon as the new coordinator serves the group. See
// deploy/chaos/FINDINGS.md.
type Group struct {
	cg      *kafka.ConsumerGroup
	id      string
	client  *kafka.Client
	log     *slog.Logger
	session time.Duration

	ctx    context.Context // ends when Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	last string // member id of the last generation handed out, until kafka-go gives it up
}

// NewGroup starts a consumer group with cfg (its Brokers are this
// configuration's). log receives the evictions of stale members.
func (c *Config) NewGroup(cfg kafka.ConsumerGroupConfig, log *slog.Logger) (*Group, error) {
	cfg.Brokers = c.BrokerList()
	cg, err := kafka.NewConsumerGroup(cfg)
	if err != nil {
		return nil, err
	}
	g := &Group{cg: cg, id: cfg.ID, client: c.Client(), log: log, session: cfg.SessionTimeout}
	if g.session <= 0 {
		g.session = 30 * time.Second // kafka-go's default
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Next waits for the next generation, as kafka.ConsumerGroup.Next does.
// When it returns an error after which kafka-go rejoins as a new member
// (any error but RebalanceInProgress, consumergroup.go:740-756), the
// previous generation's member is removed from the group in the background.
func (g *Group) Next(ctx context.Context) (*kafka.Generation, error) {
	gen, err := g.cg.Next(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.last = gen.MemberID
		return gen, nil
	}
	if g.last != "" && ctx.Err() == nil && !errors.Is(err, kafka.ErrGroupClosed) && !errors.Is(err, kafka.RebalanceInProgress) {
		stale := g.last
		g.last = ""
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.evict(stale)
		}()
	}
	return nil, err
}

// evict removes member from the group: it asks the coordinator to remove
// it every 250 ms until the coordinator's description of the group shows
// it gone, for at most evictFor (a coordinator that takes over loads the
// group and starts the member's session only once it serves the group; on
// a busy cluster that took 20 s). A LeaveGroup answered while a new
// coordinator takes the group over can report success without effect
// (seen on Kafka 4.4: answered 10 ms before the coordinator logged loading
// the group, which then still held the member), hence the check.
func (g *Group) evict(member string) {
	deadline := time.Now().Add(max(evictFor, 2*g.session))
	start := time.Now()
	var last error
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		ctx, cancel := context.WithTimeout(g.ctx, 3*time.Second)
		_, err := g.client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: g.id, Members: []kafka.LeaveGroupRequestMember{{ID: member}}})
		if err == nil {
			var gone bool
			if gone, err = g.gone(ctx, member); gone {
				cancel()
				g.log.Info("removed this process's previous member from the consumer group, so the rebalance need not wait for its session to expire",
					"group", g.id, "member", member, "after", time.Since(start).Round(time.Millisecond), "attempts", attempt)
				return
			}
		}
		cancel()
		last = err
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	g.log.Warn("could not remove this process's previous member from the consumer group; the next rebalance waits for its session to expire",
		"group", g.id, "member", member, "err", last)
}

// gone reports whether the group's coordinator describes the group
// without member (a group it does not know, state Dead, does not count).
func (g *Group) gone(ctx context.Context, member string) (bool, error) {
	resp, err := g.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{g.id}})
	if err != nil {
		return false, err
	}
	if len(resp.Groups) != 1 {
		return false, fmt.Errorf("describe group %s: %d groups in the answer", g.id, len(resp.Groups))
	}
	d := resp.Groups[0]
	if d.Error != nil {
		return false, d.Error
	}
	if d.GroupState == "Dead" {
		return false, fmt.Errorf("describe group %s: not known to the coordinator yet", g.id)
	}
	for _, m := range d.Members {
		if m.MemberID == member {
			return false, fmt.Errorf("member %s still in group %s (%s)", member, g.id, d.GroupState)
		}
	}
	return true, nil
}

// evictFor bounds the attempts to remove a previous member.
const evictFor = 2 * time.Minute

// Close leaves the group (kafka.ConsumerGroup.Close) and stops evictions in progress.
func (g *Group) Close() error {
	err := g.cg.Close()
	g.cancel()
	g.wg.Wait()
	if t, ok := g.client.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}
