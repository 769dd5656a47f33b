package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
)

// The fast path must agree with the full decoding on every input: when it
// accepts, the input is strict JSON and the full decoding accepts the same
// event.
func FuzzParseEventFastAgreesWithFull(f *testing.F) {
	for _, s := range []string{
		`{"type":"document.signed","account_id":"a","data":{}}`,
		` { "id" : "e_1" , "type":"ocr.completed","account_id":"a:b-c.d_e","created":1700000000,"data":{"x":[1,{"y":"}]\""}]} } `,
		`{"id":null,"type":"ocr.completed","account_id":null,"created":null,"data":{}}`,
		`{"type":"ocr.completed","data":{},"Type":"x"}`,
		`{"type":"ocr.completed","type":"face.verified","account_id":"a","data":{}}`,
		`{"typ\u0065":"ocr.completed","account_id":"a","data":{}}`,
		`{"type":"ocr.c\u006fmpleted","account_id":"a","data":{}}`,
		`{"type":"ocr.completed","account_id":"a","created":1.0,"data":{}}`,
		`{"type":"ocr.completed","account_id":"a","created":0,"data":{}}`,
		`{"type":"ocr.completed","account_id":"a","data":[]}`,
		`{"type":"ocr.completed","account_id":"a","data":{}} x`,
		`{"type":"ocr.completed","account_id":"a","data":{}`,
		`[]`, `"x"`, `{}`, ``,
		`{"type":"ocr.completed","account_id":"a","created":01,"data":{}}`,
		`{"type":"ocr.completed","account_id":"a","data":{"a":[}}`,
		`{"type":"ocr.completed","account_id":"a","data":{"a":1,"a":2}}`,
		"{\"type\":\"ocr.completed\",\"account_id\":\"a\",\"data\":{\"a\":\"\xff\"}}",
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "acct_k")
	}
	f.Fuzz(func(t *testing.T, b []byte, def string) {
		fast, ok := parseEventFast(b, def)
		if !ok {
			return
		}
		if CheckJSON(b, MaxJSONDepth) != nil || !json.Valid(b) {
			t.Fatalf("%q: the fast path accepted what is not strict JSON", b)
		}
		full, issues := parseEventFull(b, def)
		if len(issues) > 0 {
			t.Fatalf("%s: fast path accepted, full decoding says %v", b, issues)
		}
		if fast.ID != full.ID || fast.Type != full.Type || fast.AccountID != full.AccountID || fast.Created != full.Created {
			t.Fatalf("%s: fast %+v, full %+v", b, fast, full)
		}
		var a, c any
		if json.Unmarshal(fast.Data, &a) != nil || json.Unmarshal(full.Data, &c) != nil || !reflect.DeepEqual(a, c) {
			t.Fatalf("%s: data %s vs %s", b, fast.Data, full.Data)
		}
	})
}

func TestEncodedEventAndPayloadAreTheirJSON(t *testing.T) {
	ev := Event{ID: "evt_1", Type: "document.signed", AccountID: "acct_1", Created: 1700000000, Data: json.RawMessage(`{"a":[1,"é\""]}`)}
	var back Event
	if err := json.Unmarshal(EncodeEvent(&ev), &back); err != nil || !reflect.DeepEqual(back, ev) {
		t.Fatalf("event value %s decodes to %+v (%v)", EncodeEvent(&ev), back, err)
	}
	var p Payload
	if err := json.Unmarshal(EncodePayload(&ev), &p); err != nil || p.ID != ev.ID || p.Type != ev.Type || p.Created != ev.Created || string(p.Data) != string(ev.Data) {
		t.Fatalf("payload %s decodes to %+v (%v)", EncodePayload(&ev), p, err)
	}
}

// The JSON Schema states the catalogue's types.
func TestEventSchemaListsTheCatalogue(t *testing.T) {
	b, err := os.ReadFile("events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			Type struct{ Enum []string }
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range Catalogue {
		want = append(want, e.Name)
	}
	if !reflect.DeepEqual(s.Properties.Type.Enum, want) {
		t.Fatalf("schema types %v, catalogue %v", s.Properties.Type.Enum, want)
	}
}

// SplitBatch must agree with a full decoding of {"events": [...]}: when it
// accepts, the body is exactly that object and the items are its elements.
func FuzzSplitBatch(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"type":"ocr.completed","data":{}}]}`,
		` { "events" : [ {"a":"]"} , [1,2] , "x" , 3 ] } `,
		`{"events":[]}`, `{"events":[1,]}`, `{"events":[1],"x":1}`, `{"x":1,"events":[1]}`,
		`{"events":[1]} x`, `{"events":{"a":1}}`, `{"events":[1]`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		items, ok := SplitBatch(b)
		if !ok {
			return
		}
		var full map[string]json.RawMessage
		if err := json.Unmarshal(b, &full); err != nil || len(full) != 1 {
			t.Fatalf("%q: split, but the body is not one-key object: %v", b, err)
		}
		var want []json.RawMessage
		if err := json.Unmarshal(full["events"], &want); err != nil {
			t.Fatalf("%q: split, but events is not an array: %v", b, err)
		}
		if len(items) != len(want) || len(items) == 0 || len(items) > MaxBatchEvents {
			t.Fatalf("%q: %d items, the array has %d", b, len(items), len(want))
		}
		for i := range items {
			var a, c bytes.Buffer
			if json.Compact(&a, items[i]) != nil || json.Compact(&c, want[i]) != nil || a.String() != c.String() {
				t.Fatalf("%q: item %d is %q, want %q", b, i, items[i], want[i])
			}
		}
	})
}

// What the hand-written codec buys over goccy/go-json. The event parser's
// alternatives: goccy decoding into a struct with pointer fields (unknown
// fields refused), and the full map decoding that reports every problem.
// The encoders' alternative: goccy's Marshal of the same struct.

var benchEvent = []byte(`{"id":"evt_01HZX3K9Q7","type":"document.signed","account_id":"acct_42","created":1700000000,"data":{"document_id":"doc_abc123","signer":{"email":"john@example.com","name":"John Doe"},"signed_at":"2024-01-15T14:30:00Z","ip_address":"192.168.1.1"}}`)

type eventStruct struct {
	ID        *string           `json:"id"`
	Type      *string           `json:"type"`
	AccountID *string           `json:"account_id"`
	Created   *int64            `json:"created"`
	Data      gojson.RawMessage `json:"data"`
}

// parseEventStruct is ParseEvent's fast path done by goccy/go-json.
func parseEventStruct(b []byte, defaultAccount string) (Event, bool) {
	var v eventStruct
	dec := gojson.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if dec.Decode(&v) != nil || v.Type == nil || !IsEventType(*v.Type) || len(v.Data) == 0 || v.Data[0] != '{' || len(v.Data) > MaxEventDataBytes {
		return Event{}, false
	}
	ev := Event{Type: *v.Type, AccountID: defaultAccount, Data: json.RawMessage(v.Data)}
	if v.ID != nil {
		if CheckIdent(*v.ID) != "" {
			return Event{}, false
		}
		ev.ID = *v.ID
	}
	if v.AccountID != nil {
		if CheckIdent(*v.AccountID) != "" {
			return Event{}, false
		}
		ev.AccountID = *v.AccountID
	}
	if v.Created != nil {
		if *v.Created < 1 || *v.Created > maxCreated {
			return Event{}, false
		}
		ev.Created = *v.Created
	}
	return ev, ev.AccountID != ""
}

func BenchmarkParseEvent(b *testing.B) {
	f := func(name string, parse func([]byte) bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(benchEvent)))
			for b.Loop() {
				if !parse(benchEvent) {
					b.Fatal("not accepted")
				}
			}
		})
	}
	f("handwritten", func(x []byte) bool { _, issues := ParseEvent(x, ""); return len(issues) == 0 })
	f("goccy-struct", func(x []byte) bool { _, ok := parseEventStruct(x, ""); return ok })
	f("goccy-map", func(x []byte) bool { _, issues := parseEventFull(x, ""); return len(issues) == 0 })
}

func BenchmarkEncodePayload(b *testing.B) {
	ev, _ := ParseEvent(benchEvent, "")
	f := func(name string, enc func() []byte) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if len(enc()) == 0 {
					b.Fatal("empty")
				}
			}
		})
	}
	f("handwritten", func() []byte { return EncodePayload(&ev) })
	f("goccy", func() []byte {
		out, _ := gojson.Marshal(Payload{ID: ev.ID, Type: ev.Type, Created: ev.Created, Data: ev.Data})
		return out
	})
	f("handwritten-event", func() []byte { return EncodeEvent(&ev) })
	f("goccy-event", func() []byte { out, _ := gojson.Marshal(&ev); return out })
}

// The struct decoding agrees with the fast path on the fuzz seeds, so the
// benchmark compares like with like.
func TestStructDecodingAgrees(t *testing.T) {
	for _, s := range []string{string(benchEvent), `{"type":"ocr.completed","account_id":"a","data":{}}`, `{"type":"x","account_id":"a","data":{}}`, `{"type":"ocr.completed","data":{},"y":1}`} {
		fast, ok1 := parseEventFast([]byte(s), "")
		st, ok2 := parseEventStruct([]byte(s), "")
		if ok1 != ok2 || ok1 && (fmt.Sprint(fast.ID, fast.Type, fast.AccountID, fast.Created) != fmt.Sprint(st.ID, st.Type, st.AccountID, st.Created) || strings.TrimSpace(string(fast.Data)) != strings.TrimSpace(string(st.Data))) {
			t.Errorf("%s: fast %v %+v, struct %v %+v", s, ok1, fast, ok2, st)
		}
	}
}

// Strict JSON: invalid UTF-8, unpaired surrogates, duplicate keys and too
// deep nesting, anywhere in the event, are issues of the field they are
// in, on the fast path and the full decoding alike.
func TestParseEventIsStrict(t *testing.T) {
	f := func(in, wantField, wantIssue string) {
		t.Helper()
		_, issues := ParseEvent([]byte(in), "acct")
		if len(issues) == 0 || issues[0].Field != wantField || !strings.Contains(issues[0].Issue, wantIssue) {
			t.Errorf("%q: %v; want %s: %s", in, issues, wantField, wantIssue)
		}
		if ReasonLabel(issues) != strings.FieldsFunc(wantField, func(r rune) bool { return r == '.' || r == '[' })[0] {
			t.Errorf("%q: reason label %q", in, ReasonLabel(issues))
		}
	}
	f("{\"type\":\"ocr.completed\",\"data\":{\"n\":\"\xff\"}}", "data.n", "not valid UTF-8")
	f(`{"type":"ocr.completed","data":{"n":"\udfff"}}`, "data.n", "unpaired")
	f(`{"type":"ocr.completed","data":{"a":1,"a":2}}`, "data.a", "duplicate")
	f(`{"type":"ocr.completed","data":{"a":{"b":[{"c":1,"\u0063":2}]}}}`, "data.a.b[0].c", "duplicate")
	f(`{"type":"ocr.completed","type":"face.verified","data":{}}`, "type", "duplicate")
	f(`{"type":"ocr.completed","data":{"a":1},"data":{"b":2}}`, "data", "duplicate")
	f(`{"type":"ocr.completed","data":`+strings.Repeat(`[`, 70)+strings.Repeat(`]`, 70)+`}`, "data"+strings.Repeat("[0]", 63), "nested more than 64")
	f(`{"type":"ocr.completed","data":`+strings.Repeat(`{"a":`, 20000)+`1`+strings.Repeat(`}`, 20000)+`}`, "data"+strings.Repeat(".a", 63), "nested more than 64")
	if _, issues := ParseEvent([]byte(`{"type":"ocr.completed","data":`+strings.Repeat(`{"a":`, 63)+`1`+strings.Repeat(`}`, 63)+`}`), "acct"); len(issues) != 0 {
		t.Errorf("64 levels: %v", issues)
	}
	if _, issues := ParseEvent([]byte(`[{"a":1,"a":2}]`), "acct"); len(issues) != 1 || issues[0].Field != "" {
		t.Errorf("an array: %v", issues)
	}
}
