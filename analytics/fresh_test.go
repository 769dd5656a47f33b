package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// A first start against a cluster where the topics do not exist yet: the
// writer must still consume (regression: the group reader used to join in
// New, before Start created the topics, got an empty assignment and never
// read anything).
func TestWriterConsumesOnAFreshCluster(t *testing.T) {
	_, db := testenv.ClickHouse(t)
	kc := &broker.Config{Brokers: testenv.KafkaAddr(), TopicPrefix: "fresh-" + broker.RandomSuffix(8)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		broker.DeleteTopics(ctx, kc)
	})
	startAnalytics(t, testConfig(kc, testenv.ClickHouseAddr(), db))

	now := time.Now().UTC().Truncate(time.Second)
	var as []schemas.Attempt
	for i := range 20 {
		as = append(as, schemas.Attempt{
			DeliveryID: schemas.DeliveryID("evt_fresh", string(rune('a'+i))), EventID: "evt_fresh", EventType: "document.signed",
			AccountID: "acct", EndpointID: "we_fresh" + string(rune('a'+i)), Attempt: 1, Outcome: schemas.OutcomeSuccess,
			HTTPStatus: 200, AcceptedAt: now, AttemptedAt: now,
		})
	}
	produce(t, kc, encode(t, as...)...)
	waitRows(t, testenv.Open(t, testenv.ClickHouseAddr(), db), db, 20)
}
