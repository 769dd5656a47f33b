package schemas

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestTaskRoundTripsThroughItsMessage(t *testing.T) {
	f := func(in Task) {
		t.Helper()
		got, err := ParseTask(in.Message("x"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("round trip:\n got  %+v\n want %+v", got, in)
		}
	}
	base := Task{DeliveryID: "del_1", EventID: "evt_1", EventType: "document.signed", AccountID: "acct_a", EndpointID: "we_1",
		Attempt: 2, AcceptedAt: time.UnixMilli(1700000000123).UTC(), Body: []byte(`{}`)}
	f(base)
	withPos := base
	withPos.EndpointsAt = []int64{12}
	f(withPos)
	withPos.EndpointsAt = []int64{0, 7, 123456789}
	withPos.DueAt = time.UnixMilli(1700000060000).UTC()
	f(withPos)
}

func TestParseOffsets(t *testing.T) {
	f := func(in string, want []int64) {
		t.Helper()
		got, err := ParseOffsets(in)
		if want == nil {
			if err == nil {
				t.Errorf("ParseOffsets(%q) = %v, want an error", in, got)
			}
			return
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseOffsets(%q) = %v, %v; want %v", in, got, err, want)
		}
		if s := string(AppendOffsets(nil, got)); s != in {
			t.Errorf("AppendOffsets(%v) = %q, want %q", got, s, in)
		}
	}
	f("0", []int64{0})
	f("12,7", []int64{12, 7})
	f("", nil)
	f("1,,2", nil)
	f("-1", nil)
	f("1;2", nil)
	f("9223372036854775808", nil)
	m := (&Task{DeliveryID: "d", EndpointID: "e", Attempt: 1}).Message("x")
	m.Headers = append(m.Headers, m.Headers[0])
	m.Headers[len(m.Headers)-1].Key, m.Headers[len(m.Headers)-1].Value = HeaderEndpointsAt, []byte("x")
	if _, err := ParseTask(m); !errors.Is(err, ErrBadTask) {
		t.Errorf("a task with a bad %s: %v", HeaderEndpointsAt, err)
	}
}
