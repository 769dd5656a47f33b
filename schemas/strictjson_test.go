package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

func TestCheckJSON(t *testing.T) {
	f := func(in, wantPath, wantIssue string, wantSyntax bool) {
		t.Helper()
		err := CheckJSON([]byte(in), 4)
		if wantIssue == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			return
		}
		if err == nil || err.Path != wantPath || !strings.Contains(err.Issue, wantIssue) || err.Syntax != wantSyntax {
			t.Errorf("%q: %+v; want path %q issue %q syntax %v", in, err, wantPath, wantIssue, wantSyntax)
		}
	}
	f(`{"a":[1,-2.5e+3,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"],"b":{}}`, "", "", false)
	f(` [ ] `, "", "", false)
	f(`"é"`, "", "", false)
	f(`{"a":[[[1]]]}`, "", "", false) // 4 levels
	f(`{"a":[[[[1]]]]}`, "a[0][0][0]", "nested more than 4 levels", false)
	f(`{"a":1,"a":2}`, "a", "duplicate key", false)
	f(`{"a":1,"\u0061":2}`, "a", "duplicate key", false)
	f(`{"\/":1,"/":2}`, "/", "duplicate key", false)
	f(`{"a\/":1,"b\/":2}`, "", "", false)
	f(`{"x":{"a":1},"y":{"a":1}}`, "", "", false) // the same key in two objects
	f(`{"x":[{"a":1,"b":{"c":1,"c":2}}]}`, "x[0].b.c", "duplicate key", false)
	f("{\"a\":\"\xff\"}", "a", "not valid UTF-8", false)
	f("{\"a\":[\"ok\",\"\xc3\"]}", "a[1]", "not valid UTF-8", false)
	f("{\"k\xe9\":1}", "", "has a key that is not valid UTF-8", false)
	f("{\"o\":{\"k\xe9\":1}}", "o", "has a key that is not valid UTF-8", false)
	f(`{"a":"\ud800"}`, "a", "unpaired UTF-16 surrogate", false)
	f(`{"a":"\udc00\ud800"}`, "a", "unpaired UTF-16 surrogate", false)
	f(`{"a":"\ud800\u0041"}`, "a", "unpaired UTF-16 surrogate", false)
	f(`{"a":1} x`, "", "after the JSON value", true)
	f(`{"a":01}`, "", "expected ','", true)
	f(`{"a":1,}`, "", "expected a string key", true)
	f(`{'a':1}`, "", "expected a string key", true)
	f(`[1 2]`, "[0]", "expected ','", true)
	f(`{"a":tru}`, "a", "invalid literal", true)
	f("{\"a\":\"\x01\"}", "a", "control character", true)
	f(`{"a":"\x"}`, "a", "invalid escape", true)
	f(``, "", "unexpected end", true)
	f(`{"a":`, "a", "unexpected end", true)
	// Many keys (the map path): still exact.
	var b strings.Builder
	b.WriteString("{")
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
	}
	f(b.String()+"}", "", "", false)
	f(b.String()+`,"kxx":2}`, "kxx", "duplicate key", false)
}

// reference checks b for duplicate keys and depth with encoding/json's tokenizer.
func reference(b []byte, maxDepth int) (dup, deep bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // the next string token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				dup = true
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		switch d, _ := tok.(json.Delim); d {
		case '{', '[':
			stack = append(stack, &frame{obj: d == '{', keys: map[string]bool{}, key: d == '{'})
			if len(stack) > maxDepth {
				deep = true
			}
			continue
		case '}', ']':
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}

// CheckJSON agrees with encoding/json on syntax, and what it accepts is
// valid UTF-8, free of duplicate keys and within the depth.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,{"b":"c"}],"d":null}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, "{\"a\":\"\xff\"}",
		`[[[[[[1]]]]]]`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `1e5`, `-0.0`, `{"a":{"b":{"c":{}}}}`, ` "x" `, `{}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckJSON(b, 5)
		valid := json.Valid(b)
		switch {
		case err == nil && !valid:
			t.Fatalf("%q accepted, but it is not JSON", b)
		case err != nil && err.Syntax && valid:
			t.Fatalf("%q: %v, but it is JSON", b, err)
		}
		if err != nil {
			return
		}
		if !utf8.Valid(b) {
			t.Fatalf("%q accepted with invalid UTF-8", b)
		}
		if dup, deep := reference(b, 5); dup || deep {
			t.Fatalf("%q accepted: duplicate keys %v, too deep %v", b, dup, deep)
		}
	})
}

// CheckJSON replaced goccy's json.Valid in front of the event fast path:
// it does more (UTF-8, duplicate keys, depth) in the same single pass.
func BenchmarkCheckJSON(b *testing.B) {
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchEvent)))
		for b.Loop() {
			if CheckJSON(benchEvent, MaxJSONDepth) != nil {
				b.Fatal("refused")
			}
		}
	})
	b.Run("goccy-valid", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchEvent)))
		for b.Loop() {
			if !gojson.Valid(benchEvent) {
				b.Fatal("refused")
			}
		}
	})
}
