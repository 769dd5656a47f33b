package gateway

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/zaits/webhooks/schemas"
)

// The fast path must agree with the full decoding on every input: when it
// accepts, the full decoding accepts the same event.
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
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "acct_k")
	}
	f.Fuzz(func(t *testing.T, b []byte, def string) {
		if !json.Valid(b) {
			return
		}
		fast, ok := parseEventFast(b, def)
		if !ok {
			return
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
	ev := schemas.Event{ID: "evt_1", Type: "document.signed", AccountID: "acct_1", Created: 1700000000, Data: json.RawMessage(`{"a":[1,"é\""]}`)}
	var back schemas.Event
	if err := json.Unmarshal(eventValue(&ev), &back); err != nil || !reflect.DeepEqual(back, ev) {
		t.Fatalf("event value %s decodes to %+v (%v)", eventValue(&ev), back, err)
	}
	var p schemas.Payload
	if err := json.Unmarshal(payload(&ev), &p); err != nil || p.ID != ev.ID || p.Type != ev.Type || p.Created != ev.Created || string(p.Data) != string(ev.Data) {
		t.Fatalf("payload %s decodes to %+v (%v)", payload(&ev), p, err)
	}
}

// The JSON Schema states the catalogue's types.
func TestEventSchemaListsTheCatalogue(t *testing.T) {
	b, err := os.ReadFile("../schemas/events.schema.json")
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
	for _, e := range schemas.Catalogue {
		want = append(want, e.Name)
	}
	if !reflect.DeepEqual(s.Properties.Type.Enum, want) {
		t.Fatalf("schema types %v, catalogue %v", s.Properties.Type.Enum, want)
	}
}
