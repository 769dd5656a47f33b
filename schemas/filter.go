package schemas

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/goccy/go-json"
)

// Endpoint filters: a JSON object matched against an event before fan-out;
// only the events it matches become tasks for that endpoint.
//
//   - A key is a dot path into the event: "type", "id", "account_id",
//     "created" or "data" followed by field names ("data.signer.email"); a
//     segment that is a whole number also indexes an array
//     ("data.items.0.sku"). Several keys must all match.
//   - A value is a literal (string, number, boolean or null: equality) or an
//     operator object: $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists
//     (several operators must all hold).
//   - "$and" and "$or" take a non-empty array of filters, "$not" one filter.
//
// Semantics: equality is of JSON type and value (1 never equals "1");
// numbers compare as IEEE 754 doubles, strings byte-wise (so RFC 3339
// timestamps in UTC order by time); $gt/$gte/$lt/$lte hold only for a value
// of the literal's type (number or string). A missing field (or one reached
// through a non-object) matches nothing but $ne, $nin and "$exists": false;
// null is a value ("$exists": true holds for it, {"x": null} matches only an
// explicit null). Objects and arrays are never equal to a literal. The
// empty filter {} matches every event.
//
// A filter is compiled once (CompileFilter) and matched against many events
// without parsing it again; an event's data is decoded at most once, and
// only for filters that read data.
const (
	// MaxFilterBytes bounds a filter's compact JSON.
	MaxFilterBytes = 4096
	// MaxFilterDepth bounds the nesting of $and, $or and $not.
	MaxFilterDepth = 8
	// maxFilterPathSegments bounds the segments of one dot path.
	maxFilterPathSegments = 32
)

// FilterOperators are the operators of an operator object.
var FilterOperators = []string{"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"}

// FilterError is why a filter does not compile: Path is where, relative to
// the filter ("" for the filter itself, "data.amount.$gte", "$and[1]").
type FilterError struct {
	Path  string
	Issue string
}

func (e *FilterError) Error() string {
	if e.Path == "" {
		return e.Issue
	}
	return e.Path + ": " + e.Issue
}

// Filter is a compiled endpoint filter; its zero value and nil match every event.
type Filter struct {
	root  cond
	src   []byte // compact JSON
	nodes int
}

// CompileFilter compiles raw, a JSON object. The *FilterError says what is
// wrong with a filter that does not compile.
func CompileFilter(raw []byte) (*Filter, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, &FilterError{Issue: "must be a JSON object"}
	}
	src := buf.Bytes()
	if len(src) == 0 || src[0] != '{' {
		return nil, &FilterError{Issue: "must be a JSON object"}
	}
	if len(src) > MaxFilterBytes {
		return nil, &FilterError{Issue: fmt.Sprintf("must be at most %d bytes of compact JSON, got %d", MaxFilterBytes, len(src))}
	}
	var v map[string]any
	if err := json.Unmarshal(src, &v); err != nil || v == nil {
		return nil, &FilterError{Issue: "must be a JSON object"}
	}
	c := &compiler{}
	root, err := c.filter(v, "", 0)
	if err != nil {
		return nil, err
	}
	return &Filter{root: root, src: src, nodes: c.nodes}, nil
}

// JSON returns the filter's compact JSON (what is stored).
func (f *Filter) JSON() []byte { return f.src }

// Match reports whether the filter lets ev through. A nil filter matches.
func (f *Filter) Match(ev *FilterEvent) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(ev)
}

// FilterEvent is an event as filters see it. Reset it for each event; it
// decodes the event's data the first time a filter reads it, once for all
// the filters matched against it.
type FilterEvent struct {
	id, typ, account string
	created          int64
	raw              []byte
	data             any
	decoded          bool
	roots            [rootData]any // the scalar fields as values, boxed once when first read
	gen              uint32        // this event's generation in memo
	memo             []memoValue   // by interned data path: its value in the event of generation gen
}

type memoValue struct {
	gen uint32
	ok  bool
	v   any
}

// Reset makes fe the event ev (copied: fe keeps no reference to ev).
func (fe *FilterEvent) Reset(ev *Event) {
	memo, gen := fe.memo, fe.gen+1
	if gen == 0 { // wrapped: forget every remembered value
		clear(memo)
		gen = 1
	}
	*fe = FilterEvent{id: ev.ID, typ: ev.Type, account: ev.AccountID, created: ev.Created, raw: ev.Data, gen: gen, memo: memo}
}

// Path memo. The data paths filters read are interned process-wide the
// first time a filter reading them is matched (at most maxMemoPaths of
// them; later ones are simply looked up every time), and a FilterEvent
// remembers each interned path's value for its event: many filters on the
// same path (100 endpoints filtering on data.bucket) look it up once per
// event. Only matching interns, so paths of filters the gateway merely
// validates take no room.
const maxMemoPaths = 1 << 16

var memoPaths struct {
	mu  sync.Mutex
	ids map[string]int32
}

func internPath(key string) int32 {
	memoPaths.mu.Lock()
	defer memoPaths.mu.Unlock()
	if id, ok := memoPaths.ids[key]; ok {
		return id
	}
	if len(memoPaths.ids) >= maxMemoPaths {
		return -1
	}
	if memoPaths.ids == nil {
		memoPaths.ids = map[string]int32{}
	}
	id := int32(len(memoPaths.ids))
	memoPaths.ids[key] = id
	return id
}

// root returns the scalar field r (not rootData) as a filter value.
func (fe *FilterEvent) root(r int) any {
	if v := fe.roots[r]; v != nil {
		return v
	}
	var v any
	switch r {
	case rootID:
		v = fe.id
	case rootType:
		v = fe.typ
	case rootAccount:
		v = fe.account
	default:
		v = float64(fe.created)
	}
	fe.roots[r] = v
	return v
}

func (fe *FilterEvent) dataValue() (any, bool) {
	if !fe.decoded {
		fe.decoded = true
		if len(fe.raw) == 0 || json.Unmarshal(fe.raw, &fe.data) != nil {
			fe.data, fe.raw = nil, nil // no data: every data path is missing
		}
	}
	return fe.data, fe.raw != nil
}

// cond is one compiled condition.
type cond interface{ match(*FilterEvent) bool }

type allOf []cond

func (c allOf) match(ev *FilterEvent) bool {
	for _, x := range c {
		if !x.match(ev) {
			return false
		}
	}
	return true
}

type anyOf []cond

func (c anyOf) match(ev *FilterEvent) bool {
	for _, x := range c {
		if x.match(ev) {
			return true
		}
	}
	return false
}

type notOf struct{ c cond }

func (c notOf) match(ev *FilterEvent) bool { return !c.c.match(ev) }

type always struct{}

func (always) match(*FilterEvent) bool { return true }

// Roots of a dot path: the event's fields.
const (
	rootID = iota
	rootType
	rootAccount
	rootCreated
	rootData
)

var filterRoots = map[string]int{"id": rootID, "type": rootType, "account_id": rootAccount, "created": rootCreated, "data": rootData}

// field is the operators on one dot path.
type field struct {
	root int
	path []string // below data
	key  string   // the whole dot path
	ops  []op
	slot atomic.Int32 // data paths: 0 not interned yet, -1 not memoized, else the memo index + 1
}

func (c *field) match(ev *FilterEvent) bool {
	v, ok := c.value(ev)
	for i := range c.ops {
		if !c.ops[i].holds(v, ok) {
			return false
		}
	}
	return true
}

// value resolves the path in ev: the value and whether it exists.
func (c *field) value(ev *FilterEvent) (any, bool) {
	if c.root != rootData {
		return ev.root(c.root), true
	}
	slot := c.slot.Load()
	if slot == 0 {
		slot = internPath(c.key)
		if slot >= 0 {
			slot++
		}
		c.slot.Store(slot)
	}
	if slot < 0 || ev.gen == 0 { // not memoized, or an event that was never Reset
		return c.lookup(ev)
	}
	i := int(slot - 1)
	if i < len(ev.memo) && ev.memo[i].gen == ev.gen {
		return ev.memo[i].v, ev.memo[i].ok
	}
	v, ok := c.lookup(ev)
	if i >= len(ev.memo) {
		ev.memo = append(ev.memo, make([]memoValue, i+1-len(ev.memo))...)
	}
	ev.memo[i] = memoValue{gen: ev.gen, ok: ok, v: v}
	return v, ok
}

// lookup resolves a data path in ev.
func (c *field) lookup(ev *FilterEvent) (any, bool) {
	cur, ok := ev.dataValue()
	if !ok {
		return nil, false
	}
	for _, seg := range c.path {
		switch x := cur.(type) {
		case map[string]any:
			if cur, ok = x[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) || seg != strconv.Itoa(i) {
				return nil, false
			}
			cur = x[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

type opKind uint8

const (
	opEq opKind = iota
	opNe
	opIn
	opNin
	opGt
	opGte
	opLt
	opLte
	opExists
)

var opKinds = map[string]opKind{"$eq": opEq, "$ne": opNe, "$in": opIn, "$nin": opNin, "$gt": opGt, "$gte": opGte, "$lt": opLt, "$lte": opLte, "$exists": opExists}

// literal is a scalar JSON value of a filter: nil, bool, float64 or string.
type literal = any

type op struct {
	kind   opKind
	lit    literal
	set    []literal
	exists bool
}

func (o *op) holds(v any, ok bool) bool {
	switch o.kind {
	case opEq:
		return ok && equal(v, o.lit)
	case opNe:
		return !ok || !equal(v, o.lit)
	case opIn:
		return ok && in(v, o.set)
	case opNin:
		return !ok || !in(v, o.set)
	case opExists:
		return ok == o.exists
	}
	if !ok {
		return false
	}
	var c int
	switch l := o.lit.(type) {
	case float64:
		n, isNum := v.(float64)
		if !isNum {
			return false
		}
		switch {
		case n < l:
			c = -1
		case n > l:
			c = 1
		case n == l:
		default:
			return false
		}
	case string:
		s, isStr := v.(string)
		if !isStr {
			return false
		}
		c = strings.Compare(s, l)
	default:
		return false
	}
	switch o.kind {
	case opGt:
		return c > 0
	case opGte:
		return c >= 0
	case opLt:
		return c < 0
	default: // opLte
		return c <= 0
	}
}

// equal compares an event value with a literal: same JSON type and value.
func equal(v any, lit literal) bool {
	switch l := lit.(type) {
	case nil:
		return v == nil
	case bool:
		b, ok := v.(bool)
		return ok && b == l
	case float64:
		n, ok := v.(float64)
		return ok && n == l
	case string:
		s, ok := v.(string)
		return ok && s == l
	}
	return false
}

func in(v any, set []literal) bool {
	for _, l := range set {
		if equal(v, l) {
			return true
		}
	}
	return false
}

// compiler turns a decoded filter into conditions.
type compiler struct{ nodes int }

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// filter compiles one filter object at path, nested depth levels deep.
func (c *compiler) filter(v map[string]any, path string, depth int) (cond, error) {
	if depth > MaxFilterDepth {
		return nil, &FilterError{Path: path, Issue: fmt.Sprintf("nests $and, $or and $not more than %d levels deep", MaxFilterDepth)}
	}
	var conds []cond
	for _, k := range sortedKeys(v) {
		c.nodes++
		kp := join(path, k)
		switch k {
		case "$and", "$or":
			arr, ok := v[k].([]any)
			if !ok || len(arr) == 0 {
				return nil, &FilterError{Path: kp, Issue: "must be a non-empty array of filters"}
			}
			list := make([]cond, 0, len(arr))
			for i, item := range arr {
				ip := fmt.Sprintf("%s[%d]", kp, i)
				obj, ok := item.(map[string]any)
				if !ok {
					return nil, &FilterError{Path: ip, Issue: "must be a filter object"}
				}
				sub, err := c.filter(obj, ip, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, sub)
			}
			if k == "$and" {
				conds = append(conds, allOf(list))
			} else {
				conds = append(conds, anyOf(list))
			}
		case "$not":
			obj, ok := v[k].(map[string]any)
			if !ok {
				return nil, &FilterError{Path: kp, Issue: "must be a filter object"}
			}
			sub, err := c.filter(obj, kp, depth+1)
			if err != nil {
				return nil, err
			}
			conds = append(conds, notOf{sub})
		default:
			if strings.HasPrefix(k, "$") {
				return nil, &FilterError{Path: kp, Issue: fmt.Sprintf("unknown operator %q here: a filter's keys are dot paths into the event, $and, $or or $not", Clip(k, 40))}
			}
			f, err := c.field(k, v[k], kp)
			if err != nil {
				return nil, err
			}
			conds = append(conds, f)
		}
	}
	switch len(conds) {
	case 0:
		return always{}, nil
	case 1:
		return conds[0], nil
	}
	return allOf(conds), nil
}

// field compiles the condition on one dot path.
func (c *compiler) field(key string, val any, kp string) (cond, error) {
	segs := strings.Split(key, ".")
	if len(segs) > maxFilterPathSegments {
		return nil, &FilterError{Path: kp, Issue: fmt.Sprintf("a path has at most %d segments", maxFilterPathSegments)}
	}
	for _, s := range segs {
		if s == "" {
			return nil, &FilterError{Path: kp, Issue: "is not a dot path such as data.amount (empty segment)"}
		}
	}
	root, ok := filterRoots[segs[0]]
	if !ok {
		return nil, &FilterError{Path: kp, Issue: "a path starts with one of the event's fields: type, id, account_id, created or data (e.g. data." + Clip(key, 40) + ")"}
	}
	if root != rootData && len(segs) > 1 {
		return nil, &FilterError{Path: kp, Issue: fmt.Sprintf("%s is a scalar: it has no fields", segs[0])}
	}
	f := &field{root: root, path: segs[1:], key: key}
	obj, isObj := val.(map[string]any)
	if !isObj {
		lit, err := scalar(val, kp, "must be a string, number, boolean, null or an operator object ($eq, $in, …); a list of values needs $in")
		if err != nil {
			return nil, err
		}
		f.ops = []op{{kind: opEq, lit: lit}}
		return f, nil
	}
	if len(obj) == 0 {
		return nil, &FilterError{Path: kp, Issue: "an operator object needs at least one operator: " + strings.Join(FilterOperators, ", ")}
	}
	for _, name := range sortedKeys(obj) {
		op, err := compileOp(name, obj[name], join(kp, name))
		if err != nil {
			return nil, err
		}
		c.nodes++
		f.ops = append(f.ops, op)
	}
	return f, nil
}

func compileOp(name string, arg any, path string) (op, error) {
	kind, ok := opKinds[name]
	if !ok {
		if !strings.HasPrefix(name, "$") {
			return op{}, &FilterError{Path: path, Issue: "an operator object's keys are operators (" + strings.Join(FilterOperators, ", ") + "); nested fields are dot paths such as data.signer.email"}
		}
		return op{}, &FilterError{Path: path, Issue: fmt.Sprintf("unknown operator %q (use %s)", Clip(name, 40), strings.Join(FilterOperators, ", "))}
	}
	o := op{kind: kind}
	switch kind {
	case opEq, opNe:
		lit, err := scalar(arg, path, "must be a string, number, boolean or null")
		if err != nil {
			return op{}, err
		}
		o.lit = lit
	case opIn, opNin:
		arr, ok := arg.([]any)
		if !ok || len(arr) == 0 {
			return op{}, &FilterError{Path: path, Issue: "must be a non-empty array of strings, numbers, booleans or nulls"}
		}
		for i, x := range arr {
			lit, err := scalar(x, fmt.Sprintf("%s[%d]", path, i), "must be a string, number, boolean or null")
			if err != nil {
				return op{}, err
			}
			o.set = append(o.set, lit)
		}
	case opGt, opGte, opLt, opLte:
		switch arg.(type) {
		case float64, string:
			o.lit = arg
		default:
			return op{}, &FilterError{Path: path, Issue: "must be a number or a string"}
		}
	case opExists:
		b, ok := arg.(bool)
		if !ok {
			return op{}, &FilterError{Path: path, Issue: "must be true or false"}
		}
		o.exists = b
	}
	return o, nil
}

// scalar returns v if it is a JSON scalar, else a FilterError with issue.
func scalar(v any, path, issue string) (literal, error) {
	switch v.(type) {
	case nil, bool, float64, string:
		return v, nil
	}
	return nil, &FilterError{Path: path, Issue: issue}
}
