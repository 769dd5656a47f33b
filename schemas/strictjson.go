package schemas

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxJSONDepth bounds the nesting of objects and arrays in what the API
// reads: a request body, and an event counted from its own object (so a
// batch's {"events": [...]} does not count). Receivers' parsers have
// limits too (Ruby's JSON: 100 by default); deeper input is refused.
const MaxJSONDepth = 64

// JSONError is why CheckJSON refuses a text.
type JSONError struct {
	// Path is where the problem is, as field names and indices
	// ("data.signer[2].email"); "" for the text as a whole.
	Path string
	// Issue says what is wrong, for a person.
	Issue string
	// Syntax is set when the text is not JSON at all (RFC 8259).
	Syntax bool
}

func (e *JSONError) Error() string {
	if e.Path == "" {
		return e.Issue
	}
	return e.Path + ": " + e.Issue
}

// CheckJSON checks that b is exactly one JSON text under the strict rules
// every input of the API follows: RFC 8259 syntax; every string, keys
// included, valid UTF-8 with no unpaired UTF-16 surrogate escape (decoders
// would silently turn both into U+FFFD); no object with a key twice
// (compared after unescaping: decoders disagree on which one wins); and
// objects and arrays nested at most maxDepth deep. It returns the first
// problem, or nil. It allocates only to report a problem, to decode an
// escaped key, and to remember the keys of objects with many of them.
func CheckJSON(b []byte, maxDepth int) *JSONError {
	c := checkers.Get().(*checker)
	c.b, c.max = b, maxDepth
	c.run(false)
	if c.err != nil {
		c.run(true) // again, keeping the path, to say where
	}
	err := c.err
	c.b, c.err, c.keys, c.path = nil, nil, c.keys[:0], c.path[:0] // keep nothing of b alive in the pool
	checkers.Put(c)
	return err
}

// plainString marks the bytes a string holds as they are: not '"', '\\',
// a control character or the start of a multi-byte UTF-8 sequence.
var plainString = func() (t [256]bool) {
	for ch := 0x20; ch < 0x80; ch++ {
		t[ch] = ch != '"' && ch != '\\'
	}
	return t
}()

var checkers = sync.Pool{New: func() any {
	return &checker{path: make([]pathStep, 0, 16), keys: make([]span, 0, 64)}
}}

// run checks c.b from the start; with track, it keeps the path of
// the position for the error.
func (c *checker) run(track bool) {
	c.track, c.err, c.keys, c.path = track, nil, c.keys[:0], c.path[:0]
	c.i = c.ws(0)
	c.value(0)
	if c.err == nil {
		if c.i = c.ws(c.i); c.i != len(c.b) {
			c.syntax("unexpected data after the JSON value")
		}
	}
}

// span is a string's content in the text: b[s:e], escaped when it holds
// escapes (then compared and shown decoded). Offsets, not slices, so that
// the stacks hold no pointers.
type span struct {
	s, e int32
	esc  bool
}

// pathStep is one level of the position being checked: an object key or
// an array index.
type pathStep struct {
	key   span
	isKey bool
	index int
}

type checker struct {
	b     []byte
	i     int
	max   int
	err   *JSONError
	track bool // keep path (only when reporting a problem)
	path  []pathStep
	// keys holds the keys of the open objects, innermost last; an object's
	// own keys start at the index its call remembers.
	keys []span
}

// text is the content of sp, unescaped.
func (c *checker) text(sp span) []byte {
	if sp.esc {
		return unescape(c.b[sp.s:sp.e])
	}
	return c.b[sp.s:sp.e]
}

// same reports whether two keys are equal after unescaping.
func (c *checker) same(x, y span) bool {
	if !x.esc && !y.esc {
		return x.e-x.s == y.e-y.s && string(c.b[x.s:x.e]) == string(c.b[y.s:y.e])
	}
	return string(c.text(x)) == string(c.text(y))
}

func (c *checker) ws(i int) int {
	for i < len(c.b) {
		switch c.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (c *checker) fail(issue string, syntax bool) {
	if c.err != nil {
		return
	}
	var sb strings.Builder
	for _, s := range c.path {
		if !s.isKey {
			sb.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(Clip(string(c.text(s.key)), 64))
	}
	c.err = &JSONError{Path: sb.String(), Issue: issue, Syntax: syntax}
}

func (c *checker) syntax(issue string) { c.fail(issue+" at byte "+strconv.Itoa(c.i), true) }

// value checks the value at c.i, nested depth levels deep so far.
func (c *checker) value(depth int) {
	if c.i >= len(c.b) {
		c.syntax("unexpected end of input")
		return
	}
	switch ch := c.b[c.i]; {
	case ch == '{' || ch == '[':
		if depth >= c.max {
			c.fail("is nested more than "+strconv.Itoa(c.max)+" levels deep", false)
			return
		}
		if ch == '{' {
			c.object(depth + 1)
		} else {
			c.array(depth + 1)
		}
	case ch == '"':
		c.str(nil)
	case ch == '-' || '0' <= ch && ch <= '9':
		c.number()
	case ch == 't':
		c.literal("true")
	case ch == 'f':
		c.literal("false")
	case ch == 'n':
		c.literal("null")
	default:
		c.syntax("unexpected character")
	}
}

func (c *checker) literal(s string) {
	if len(c.b)-c.i < len(s) || string(c.b[c.i:c.i+len(s)]) != s {
		c.syntax("invalid literal")
		return
	}
	c.i += len(s)
}

func (c *checker) number() {
	b, i := c.b, c.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		c.syntax("invalid number")
		return
	}
	if i < len(b) && b[i] == '.' {
		start := i + 1
		if i = skipDigits(b, start); i == start {
			c.syntax("invalid number")
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		if i = skipDigits(b, start); i == start {
			c.syntax("invalid number")
			return
		}
	}
	c.i = i
}

// str checks the string at c.i. When key is non-nil it receives the
// string's span.
func (c *checker) str(key *span) {
	b := c.b
	start := c.i + 1
	escaped := false
	i := start
	for {
		for i < len(b) && plainString[b[i]] {
			i++
		}
		if i >= len(b) {
			c.syntax("unterminated string")
			return
		}
		ch := b[i]
		switch {
		case ch == '"':
			if key != nil {
				*key = span{int32(start), int32(i), escaped}
			}
			c.i = i + 1
			return
		case ch == '\\':
			escaped = true
			if i+1 >= len(b) {
				c.syntax("unterminated string")
				return
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					c.i = i
					c.syntax("invalid \\u escape")
					return
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(0), false
					if r < 0xdc00 && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						r2, ok2 = hex4(b, i+2)
					}
					if !ok2 || utf16.DecodeRune(r, r2) == utf8.RuneError {
						c.failString(key, "contains an unpaired UTF-16 surrogate escape")
						return
					}
					i += 6
				}
			default:
				c.i = i
				c.syntax("invalid escape")
				return
			}
		case ch < 0x20:
			c.i = i
			c.syntax("control character in a string")
			return
		case ch < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				c.failString(key, "is not valid UTF-8")
				return
			}
			i += size
		}
	}
}

// failString reports a problem inside a string; a key's is reported at
// the object holding it.
func (c *checker) failString(key *span, issue string) {
	if key != nil {
		issue = "has a key that " + issue
	}
	c.fail(issue, false)
}

// unescape decodes the content of a JSON string that str checked.
func unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			out = append(out, raw[i])
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw, i+1)
			i += 4
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(raw, i+3)
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default: // " \ /
			out = append(out, raw[i])
		}
	}
	return out
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, ch := range b[i : i+4] {
		r <<= 4
		switch {
		case '0' <= ch && ch <= '9':
			r |= rune(ch - '0')
		case 'a' <= ch && ch <= 'f':
			r |= rune(ch - 'a' + 10)
		case 'A' <= ch && ch <= 'F':
			r |= rune(ch - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// manyKeys is the number of keys from which an object's keys are looked
// up in a map instead of compared one by one.
const manyKeys = 16

func (c *checker) object(depth int) {
	c.i = c.ws(c.i + 1)
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return
	}
	first := len(c.keys)
	var seen map[string]bool
	level := len(c.path)
	c.object1(depth, first, level, seen)
	c.keys = c.keys[:first]
}

func (c *checker) object1(depth, first, level int, seen map[string]bool) {
	for {
		if c.track {
			c.path = c.path[:level] // a key's own problems are the object's
		}
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			c.syntax("expected a string key")
			return
		}
		var key span
		c.str(&key)
		if c.err != nil {
			return
		}
		if c.track {
			c.path = append(c.path, pathStep{key: key, isKey: true})
		}
		own := c.keys[first:]
		dup := false
		if seen != nil {
			k := string(c.text(key))
			dup = seen[k]
			seen[k] = true
		} else {
			for _, k := range own {
				if k.e-k.s == key.e-key.s || k.esc || key.esc {
					if c.same(k, key) {
						dup = true
						break
					}
				}
			}
			if len(own)+1 >= manyKeys {
				seen = make(map[string]bool, 2*manyKeys)
				for _, k := range own {
					seen[string(c.text(k))] = true
				}
				seen[string(c.text(key))] = true
			} else {
				c.keys = append(c.keys, key)
			}
		}
		if dup {
			c.fail("is given more than once (duplicate key)", false)
			return
		}
		c.i = c.ws(c.i)
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			c.syntax("expected ':'")
			return
		}
		c.i = c.ws(c.i + 1)
		c.value(depth)
		if c.err != nil {
			return
		}
		if c.track {
			c.path = c.path[:level]
		}
		c.i = c.ws(c.i)
		if c.i < len(c.b) && c.b[c.i] == ',' {
			c.i = c.ws(c.i + 1)
			continue
		}
		if c.i < len(c.b) && c.b[c.i] == '}' {
			c.i++
			return
		}
		c.syntax("expected ',' or '}'")
		return
	}
}

func (c *checker) array(depth int) {
	c.i = c.ws(c.i + 1)
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return
	}
	level := len(c.path)
	if c.track {
		c.path = append(c.path, pathStep{})
	}
	for n := 0; ; n++ {
		if c.track {
			c.path[level] = pathStep{index: n}
		}
		c.value(depth)
		if c.err != nil {
			return
		}
		c.i = c.ws(c.i)
		if c.i < len(c.b) && c.b[c.i] == ',' {
			c.i = c.ws(c.i + 1)
			continue
		}
		if c.i < len(c.b) && c.b[c.i] == ']' {
			c.i++
			if c.track {
				c.path = c.path[:level]
			}
			return
		}
		c.syntax("expected ',' or ']'")
		return
	}
}

// skipDigits returns the index after the run of ASCII digits at b[i:].
func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
