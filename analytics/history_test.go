package analytics

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/internal/ops"
	"github.com/zaits/webhooks/internal/testenv"
	"github.com/zaits/webhooks/schemas"
)

// scenario is a delivery log with known answers.
type scenario struct {
	base     time.Time
	attempts []schemas.Attempt
	// ids maps "evtN" to its delivery id on its endpoint.
	ids map[string]string
}

func attemptOf(acc, ep, evt, typ string, n int, outcome string, status int, latency int64, accepted time.Time) schemas.Attempt {
	a := schemas.Attempt{
		DeliveryID: schemas.DeliveryID(evt, ep), EventID: evt, EventType: typ, AccountID: acc, EndpointID: ep,
		Attempt: n, Outcome: outcome, HTTPStatus: status, LatencyMS: latency,
		EventCreated: accepted.Unix(), AcceptedAt: accepted, AttemptedAt: accepted.Add(time.Duration(n-1) * time.Minute),
	}
	switch {
	case outcome == schemas.OutcomeSuccess:
		a.ResponseExcerpt = `{"ok":true}`
	case status == 0:
		a.ErrorCode, a.Error = schemas.ErrCodeTimeout, "timeout: no response within 10s"
	default:
		a.ErrorCode, a.Error, a.ResponseExcerpt = schemas.ErrCodeHTTPStatus, "Internal server error", "oops"
	}
	if outcome == schemas.OutcomeRetrying {
		next := a.AttemptedAt.Add(time.Minute)
		a.NextRetryAt = &next
	}
	return a
}

func newScenario() scenario {
	s := scenario{base: time.Now().UTC().Truncate(time.Second).Add(-time.Hour), ids: map[string]string{}}
	add := func(acc, ep, evt, typ string, accepted time.Time, outcomes ...string) {
		s.ids[evt] = schemas.DeliveryID(evt, ep)
		for i, o := range outcomes {
			status, latency := 500, int64(100*(i+1))
			if o == schemas.OutcomeSuccess {
				status = 200
			}
			if evt == "evt2" {
				status, latency = 0, 10000
			}
			s.attempts = append(s.attempts, attemptOf(acc, ep, evt, typ, i+1, o, status, latency, accepted))
		}
	}
	r, f, ok := schemas.OutcomeRetrying, schemas.OutcomeFailed, schemas.OutcomeSuccess
	add("acc_a", "we_1", "evt1", "document.signed", s.base, r, r, r, ok)
	add("acc_a", "we_1", "evt2", "face.verified", s.base.Add(time.Minute), r, r, r, r, f)
	add("acc_a", "we_1", "evt3", "document.signed", s.base.Add(2*time.Minute), r)
	for i := 4; i <= 8; i++ {
		add("acc_a", "we_1", fmt.Sprintf("evt%d", i), "document.signed", s.base.Add(time.Duration(i-1)*time.Minute), ok)
	}
	add("acc_a", "we_2", "evt9", "document.signed", s.base, ok)
	add("acc_a", "we_2", "evt12", "document.signed", s.base.Add(-10*24*time.Hour), f)
	// Another account, one endpoint id equal to acc_a's (ids are opaque strings).
	add("acc_b", "we_1", "evt10", "document.signed", s.base.Add(30*time.Minute), f)
	add("acc_b", "we_b", "evt11", "document.signed", s.base, ok)
	return s
}

func ids(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.EventID
	}
	return out
}

// check asserts every answer of the API about the scenario.
func (s scenario) check(t *testing.T, h *History) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	list := func(acc, ep string, f DeliveryFilter, want []string, wantTotal int) []Delivery {
		t.Helper()
		got, total, err := h.Deliveries(ctx, acc, ep, f)
		if err != nil {
			t.Fatalf("Deliveries(%s, %s, %+v): %v", acc, ep, f, err)
		}
		if !reflect.DeepEqual(ids(got), want) || total != wantTotal {
			t.Errorf("Deliveries(%s, %s, %+v) = %v total %d, want %v total %d", acc, ep, f, ids(got), total, want, wantTotal)
		}
		return got
	}
	all := list("acc_a", "we_1", DeliveryFilter{}, []string{"evt8", "evt7", "evt6", "evt5", "evt4", "evt3", "evt2", "evt1"}, 8)
	list("acc_a", "we_1", DeliveryFilter{Page: 1, PerPage: 3}, []string{"evt8", "evt7", "evt6"}, 8)
	list("acc_a", "we_1", DeliveryFilter{Page: 2, PerPage: 3}, []string{"evt5", "evt4", "evt3"}, 8)
	list("acc_a", "we_1", DeliveryFilter{Page: 3, PerPage: 3}, []string{"evt2", "evt1"}, 8)
	list("acc_a", "we_1", DeliveryFilter{Page: 4, PerPage: 3}, []string{}, 8)
	list("acc_a", "we_1", DeliveryFilter{Status: "failed"}, []string{"evt2"}, 1)
	list("acc_a", "we_1", DeliveryFilter{Status: "retrying"}, []string{"evt3"}, 1)
	list("acc_a", "we_1", DeliveryFilter{EventType: "face.verified"}, []string{"evt2"}, 1)
	list("acc_a", "we_1", DeliveryFilter{Status: "success", EventType: "document.signed", PerPage: 2, Page: 3}, []string{"evt4", "evt1"}, 6)
	list("acc_a", "we_1", DeliveryFilter{Status: "failed", EventType: "document.signed"}, []string{}, 0)
	list("acc_a", "we_2", DeliveryFilter{}, []string{"evt9", "evt12"}, 2)
	// Tenancy: the same endpoint id under another account shows only that account's rows.
	list("acc_b", "we_1", DeliveryFilter{}, []string{"evt10"}, 1)
	list("acc_b", "we_2", DeliveryFilter{}, []string{}, 0)
	list("acc_a", "we_b", DeliveryFilter{}, []string{}, 0)

	// 3 failed attempts and then a success: one row, attempts 4, success.
	evt1 := all[7]
	two, five := 200, 500
	want1 := Delivery{ID: s.ids["evt1"], EventID: "evt1", EventType: "document.signed", Status: "success", Attempts: 4,
		ResponseStatus: &two, ResponseTime: 400, CreatedAt: s.base, LastAttempt: s.base.Add(3 * time.Minute)}
	if !reflect.DeepEqual(evt1, want1) {
		t.Errorf("evt1 row = %+v\nwant        %+v", evt1, want1)
	}
	evt2 := all[6]
	if evt2.Status != "failed" || evt2.Attempts != 5 || evt2.ResponseStatus != nil || evt2.ErrorMessage == nil ||
		*evt2.ErrorMessage != "timeout: no response within 10s" || evt2.ResponseTime != 10000 {
		t.Errorf("evt2 row = %+v", evt2)
	}
	if evt3 := all[5]; evt3.Status != "retrying" || evt3.Attempts != 1 || *evt3.ResponseStatus != five || *evt3.ErrorMessage != "Internal server error" {
		t.Errorf("evt3 row = %+v", evt3)
	}

	// Detail: every attempt, oldest first, and the list row's summary.
	d, found, err := h.Delivery(ctx, "acc_a", "we_1", s.ids["evt1"])
	if err != nil || !found {
		t.Fatalf("Delivery(evt1) found=%v err=%v", found, err)
	}
	if !reflect.DeepEqual(d.Delivery, want1) {
		t.Errorf("detail summary = %+v\nwant             %+v", d.Delivery, want1)
	}
	var outcomes []string
	for i, a := range d.AttemptList {
		outcomes = append(outcomes, a.Status)
		if a.Attempt != i+1 || !a.AttemptedAt.Equal(s.base.Add(time.Duration(i)*time.Minute)) {
			t.Errorf("attempt %d = %+v", i+1, a)
		}
	}
	if strings.Join(outcomes, ",") != "retrying,retrying,retrying,success" {
		t.Errorf("attempt outcomes = %v", outcomes)
	}
	if a := d.AttemptList[0]; *a.ResponseStatus != 500 || *a.ErrorCode != "http_status" || a.ResponseExcerpt != "oops" || a.NextRetryAt == nil ||
		!a.NextRetryAt.Equal(s.base.Add(time.Minute)) || a.ResponseTime != 100 {
		t.Errorf("attempt 1 = %+v", a)
	}
	if a := d.AttemptList[3]; a.ErrorMessage != nil || a.ErrorCode != nil || a.NextRetryAt != nil || a.ResponseExcerpt != `{"ok":true}` {
		t.Errorf("attempt 4 = %+v", a)
	}
	for _, q := range [][3]string{{"acc_b", "we_1", s.ids["evt1"]}, {"acc_a", "we_2", s.ids["evt1"]}, {"acc_a", "we_1", "del_missing"}} {
		if _, found, err := h.Delivery(ctx, q[0], q[1], q[2]); err != nil || found {
			t.Errorf("Delivery%v found=%v err=%v, want not found", q, found, err)
		}
	}

	// Stats over a day: 6 success, 1 failed, 1 retrying; 4+5+1+5 attempts.
	st, err := h.Stats(ctx, "acc_a", "we_1", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 8 || st.Succeeded != 6 || st.Failed != 1 || st.Retrying != 1 || st.Attempts != 15 ||
		st.SuccessRate == nil || *st.SuccessRate != 6.0/7 || st.ResponseTime == nil || st.ResponseTime.P99 != 10000 || st.ResponseTime.P50 != 200 {
		t.Errorf("Stats(we_1, 24h) = %+v %+v", st, st.ResponseTime)
	}
	if st, err := h.Stats(ctx, "acc_a", "we_2", 24*time.Hour); err != nil || st.Total != 1 || *st.SuccessRate != 1 {
		t.Errorf("Stats(we_2, 24h) = %+v, %v", st, err)
	}
	if st, err := h.Stats(ctx, "acc_a", "we_2", 30*24*time.Hour); err != nil || st.Total != 2 || *st.SuccessRate != 0.5 {
		t.Errorf("Stats(we_2, 30d) = %+v, %v", st, err)
	}
	if st, err := h.Stats(ctx, "acc_b", "we_x", 24*time.Hour); err != nil || st.Total != 0 || st.SuccessRate != nil || st.ResponseTime != nil {
		t.Errorf("Stats(empty) = %+v, %v", st, err)
	}

	// The series: one bucket per minute, each delivery in the minute it was
	// accepted (they are a minute apart), totals as Stats; publish→receipt
	// of evt1 is its 4th attempt's start (3 min) plus its 400 ms.
	ser, err := h.StatsSeries(ctx, "acc_a", "we_1", 2*time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(ser.Series) != 121 || ser.Total != st.Total || ser.Succeeded != st.Succeeded || ser.Attempts != st.Attempts {
		t.Fatalf("StatsSeries(we_1, 2h, 1m) = %d buckets, %+v", len(ser.Series), ser)
	}
	type row struct {
		total, success, failed int
		p50, p99               float64 // -1: null
	}
	got := map[int]row{} // minutes after base's minute → bucket
	first := s.base.Truncate(time.Minute)
	var total row
	for i, b := range ser.Series {
		if i > 0 && !b.Start.Equal(ser.Series[i-1].Start.Add(time.Minute)) || b.Start.Second() != 0 {
			t.Fatalf("bucket %d starts at %v after %v", i, b.Start, ser.Series[i-1].Start)
		}
		total.total, total.success, total.failed = total.total+b.Total, total.success+b.Success, total.failed+b.Failed
		if b.Total == 0 {
			if b.P50MS != nil || b.P99MS != nil {
				t.Errorf("empty bucket %v has percentiles", b.Start)
			}
			continue
		}
		r := row{b.Total, b.Success, b.Failed, -1, -1}
		if b.P50MS != nil {
			r.p50, r.p99 = *b.P50MS, *b.P99MS
		}
		got[int(b.Start.Sub(first)/time.Minute)] = r
	}
	wantSeries := map[int]row{
		0: {1, 1, 0, 180400, 180400}, 1: {1, 0, 1, -1, -1}, 2: {1, 0, 0, -1, -1},
		3: {1, 1, 0, 100, 100}, 4: {1, 1, 0, 100, 100}, 5: {1, 1, 0, 100, 100}, 6: {1, 1, 0, 100, 100}, 7: {1, 1, 0, 100, 100},
	}
	if !reflect.DeepEqual(got, wantSeries) || total != (row{8, 6, 1, 0, 0}) {
		t.Errorf("series by minute after base = %+v (sum %+v), want %+v", got, total, wantSeries)
	}
	if ser, err := h.StatsSeries(ctx, "acc_a", "we_1", 24*time.Hour, time.Hour); err != nil || len(ser.Series) != 25 {
		t.Errorf("StatsSeries(we_1, 24h, 1h) = %d buckets, %v", len(ser.Series), err)
	}
	if ser, err := h.StatsSeries(ctx, "acc_b", "we_x", time.Hour, time.Minute); err != nil || len(ser.Series) != 61 || ser.Series[60].Total != 0 {
		t.Errorf("StatsSeries(empty) = %+v, %v", ser, err)
	}

	// Summaries: the 7-day window leaves evt12 (10 days old) out of we_2's rate.
	sum, err := h.Summaries(ctx, "acc_a", []string{"we_1", "we_2", "we_none", "we_b"}, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 2 || *sum["we_1"].SuccessRate != 6.0/7 || !sum["we_1"].LastDelivery.Equal(s.base.Add(7*time.Minute)) ||
		*sum["we_2"].SuccessRate != 1 || !sum["we_2"].LastDelivery.Equal(s.base) {
		t.Errorf("Summaries(acc_a) = %+v", sum)
	}
	sum, err = h.Summaries(ctx, "acc_b", []string{"we_1"}, 7*24*time.Hour)
	if err != nil || *sum["we_1"].SuccessRate != 0 || !sum["we_1"].LastDelivery.Equal(s.base.Add(30*time.Minute)) {
		t.Errorf("Summaries(acc_b) = %+v, %v", sum, err)
	}
}

func TestDeliveryLogThroughKafkaAndClickHouse(t *testing.T) {
	kc := testenv.Kafka(t)
	conn, db := testenv.ClickHouse(t)
	cfg := testConfig(kc, testenv.ClickHouseAddr(), db)
	_, reg := startAnalytics(t, cfg)
	h, err := NewHistory(conn, db, ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := newScenario()
	values := encode(t, s.attempts...)
	// Malformed records in the stream are counted and skipped, never stall it.
	bad := [][]byte{[]byte("not json"), []byte(`{"delivery_id":"","attempt":1}`), []byte(`{"delivery_id":"d","account_id":"a","endpoint_id":"e","attempt":0,"outcome":"success"}`)}
	produce(t, kc, append(append(bad[:1:1], values[:10]...), append(bad[1:], values[10:]...)...)...)
	waitRows(t, conn, db, uint64(len(s.attempts)))
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := metric(t, reg, "zaits_analytics_bad_messages_total"); got != 3 {
			return fmt.Errorf("bad messages = %v, want 3", got)
		}
		if got := metric(t, reg, "zaits_analytics_rows_inserted_total"); got != float64(len(s.attempts)) {
			return fmt.Errorf("rows inserted = %v, want %d", got, len(s.attempts))
		}
		return nil
	})
	s.check(t, h)

	// Re-consuming after a crash: a second group reads the topic from the
	// start and inserts every attempt again; a repeated attempt (same number,
	// later start) arrives too. No answer changes.
	cfg2 := testConfig(kc, testenv.ClickHouseAddr(), db)
	startAnalytics(t, cfg2)
	waitRows(t, conn, db, uint64(2*len(s.attempts)))
	repeat := s.attempts[len(s.attempts)-1]
	for _, a := range s.attempts {
		if a.EventID == "evt3" {
			repeat = a
		}
	}
	repeat.AttemptedAt = repeat.AttemptedAt.Add(time.Second)
	produce(t, kc, append(values, encode(t, repeat)...)...)
	waitRows(t, conn, db, uint64(4*len(s.attempts)+2)) // both groups read the copies
	s.check(t, h)
}

func TestHistoryRejectsBadInput(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	h, err := NewHistory(conn, db, ops.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := func(in DeliveryFilter) {
		t.Helper()
		if _, _, err := h.Deliveries(ctx, "a", "e", in); !errors.Is(err, ErrBadFilter) {
			t.Errorf("Deliveries(%+v) err = %v, want ErrBadFilter", in, err)
		}
	}
	f(DeliveryFilter{Status: "pending"})
	f(DeliveryFilter{Page: -1})
	f(DeliveryFilter{PerPage: MaxPerPage + 1})
	if _, err := h.Stats(ctx, "a", "e", 0); !errors.Is(err, ErrBadFilter) {
		t.Errorf("Stats(window 0) err = %v", err)
	}
	series := func(window, bucket time.Duration, ok bool) {
		t.Helper()
		if err := ValidateSeries(window, bucket); (err == nil) != ok || (err != nil && !errors.Is(err, ErrBadFilter)) {
			t.Errorf("ValidateSeries(%v, %v) = %v, want ok=%v", window, bucket, err, ok)
		}
	}
	series(time.Hour, time.Minute, true)
	series(24*time.Hour, time.Minute, true) // 1440 buckets
	series(24*time.Hour+time.Minute, time.Minute, false)
	series(24*time.Hour+30*time.Second, time.Minute, false)
	series(90*24*time.Hour, 2*time.Hour, true)
	series(90*24*time.Hour, time.Hour, false) // 2160 buckets
	series(time.Hour, 30*time.Second, false)
	series(time.Hour, 90*time.Second, false)
	series(time.Hour, 2*time.Hour, false)
	series(0, time.Minute, false)
	if _, err := h.StatsSeries(ctx, "a", "e", time.Hour, time.Second); !errors.Is(err, ErrBadFilter) {
		t.Errorf("StatsSeries(bucket 1s) err = %v", err)
	}
}
