// This file reads the expressions out of deploy/prometheus/alerts.yml and
// deploy/grafana/dashboards/*.json, so a new rule or panel is checked
// without touching the test.

package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// alertRule is one alerting rule of alerts.yml.
type alertRule struct {
	Group, Name, Expr string
}

// readAlerts returns every alerting rule of a Prometheus rule file.
func readAlerts(path string) ([]alertRule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				return nil, fmt.Errorf("%s: group %s has a recording rule (%s); the check knows alerts only", path, g.Name, r.Record)
			}
			out = append(out, alertRule{Group: g.Name, Name: r.Alert, Expr: strings.TrimSpace(r.Expr)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no alerting rules", path)
	}
	return out, nil
}

// panelQuery is one query of a dashboard panel.
type panelQuery struct {
	Panel, RefID, Expr string
}

// readDashboard returns every Prometheus query of a Grafana dashboard,
// panels nested in collapsed rows included.
func readDashboard(path string) ([]panelQuery, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []panelQuery
	var walk func([]json.RawMessage) error
	walk = func(ps []json.RawMessage) error {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("panel %q query %s has no expr", p.Title, t.RefID)
				}
				out = append(out, panelQuery{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, nil
}

// grafanaVars are the dashboard variables the queries may use, with the
// value they get against the test's Prometheus (1 s scrape interval).
var grafanaVars = map[string]string{"$__rate_interval": "1m", "${__rate_interval}": "1m"}

// expandGrafana replaces the dashboard variables; any other $ is an error
// (a variable the check does not know how to fill).
func expandGrafana(expr string) (string, error) {
	for k, v := range grafanaVars {
		expr = strings.ReplaceAll(expr, k, v)
	}
	if i := strings.IndexByte(expr, '$'); i >= 0 {
		return "", fmt.Errorf("unknown dashboard variable at %q", expr[i:])
	}
	return expr, nil
}

// signals splits an alert expression into the series it compares: the
// operands of its top-level and / or / unless, each without its trailing
// comparison against a number. `sum(a) > 0 and sum(b) == 0` gives sum(a)
// and sum(b). Each signal must return a series on a healthy system that
// does the work the alert watches; the alert's threshold decides only
// whether it fires. An operand compared with something other than a number
// is refused, since its signal could not be told from its condition.
//
// join is the signals joined by `and` with the original on(...) /
// ignoring(...): it returns a series only when the operands' label sets
// match, which an `and` of conditions needs to ever fire (empty when the
// expression has one operand or an `or`, a union that needs no match).
func signals(expr string) (sigs []string, join string, err error) {
	parts, mods, hasOr := splitSetOps(expr)
	var joined []string
	for _, op := range parts {
		op = strings.TrimSpace(op)
		if inner, ok := unwrap(op); ok {
			sub, subJoin, err := signals(inner)
			if err != nil {
				return nil, "", err
			}
			sigs = append(sigs, sub...)
			if subJoin == "" && len(sub) == 1 {
				subJoin = sub[0]
			}
			if subJoin == "" {
				hasOr = true // an inner union: nothing to match against
			}
			joined = append(joined, subJoin)
			continue
		}
		sig, err := stripComparison(op)
		if err != nil {
			return nil, "", err
		}
		sigs = append(sigs, sig)
		joined = append(joined, sig)
	}
	if len(parts) > 1 && !hasOr {
		var b strings.Builder
		for i, j := range joined {
			if i > 0 {
				b.WriteString(" and" + mods[i-1] + " ")
			}
			b.WriteString("(" + j + ")")
		}
		join = b.String()
	}
	return sigs, join, nil
}

// stripComparison returns op without its trailing comparison against a number.
func stripComparison(op string) (string, error) {
	lhs, rhs, found := lastComparison(op)
	if !found {
		return op, nil
	}
	rhs = strings.TrimSpace(rhs)
	rhs = strings.TrimSpace(strings.TrimPrefix(rhs, "bool "))
	if _, err := strconv.ParseFloat(rhs, 64); err != nil {
		return "", fmt.Errorf("%q: compared with %q, not a number", op, rhs)
	}
	lhs = strings.TrimSpace(lhs)
	if inner, ok := unwrap(lhs); ok {
		lhs = inner
	}
	if _, _, nested := lastComparison(lhs); nested {
		return "", fmt.Errorf("%q: more than one comparison in one operand", op)
	}
	return lhs, nil
}

// scan calls visit for every byte of expr outside string literals, with the
// nesting depth of (), [] and {} before it; visit returns how many bytes
// it consumed (at least 1) or 0 for 1.
func scan(expr string, visit func(i, depth int) int) {
	depth := 0
	for i := 0; i < len(expr); {
		c := expr[i]
		switch c {
		case '"', '\'', '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
			continue
		case '(', '[', '{':
			depth++
			i++
			continue
		case ')', ']', '}':
			depth--
			i++
			continue
		}
		n := visit(i, depth)
		if n < 1 {
			n = 1
		}
		i += n
	}
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// wordAt reports whether expr has the keyword w at i as a whole word.
func wordAt(expr string, i int, w string) bool {
	if !strings.HasPrefix(expr[i:], w) {
		return false
	}
	if i > 0 && isIdent(expr[i-1]) {
		return false
	}
	end := i + len(w)
	return end == len(expr) || !isIdent(expr[end])
}

var setModifier = regexp.MustCompile(`^\s*(on|ignoring)\s*\([^)]*\)`)

// splitSetOps splits expr at its top-level and / or / unless; mods[i] is
// the on(...) / ignoring(...) after the i-th operator ("" when none), hasOr
// whether one of them is an or.
func splitSetOps(expr string) (parts, mods []string, hasOr bool) {
	start := 0
	scan(expr, func(i, depth int) int {
		if depth != 0 {
			return 1
		}
		for _, w := range []string{"and", "or", "unless"} {
			if wordAt(expr, i, w) {
				parts = append(parts, expr[start:i])
				hasOr = hasOr || w == "or"
				start = i + len(w)
				mod := ""
				if m := setModifier.FindStringIndex(expr[start:]); m != nil {
					mod = " " + strings.TrimSpace(expr[start:start+m[1]])
					start += m[1]
				}
				mods = append(mods, mod)
				return len(w)
			}
		}
		return 1
	})
	return append(parts, expr[start:]), mods, hasOr
}

// lastComparison splits expr at its last top-level comparison operator.
func lastComparison(expr string) (lhs, rhs string, found bool) {
	at, width := -1, 0
	scan(expr, func(i, depth int) int {
		if depth != 0 {
			return 1
		}
		for _, op := range []string{"==", "!=", ">=", "<=", ">", "<"} {
			if strings.HasPrefix(expr[i:], op) {
				at, width = i, len(op)
				return len(op)
			}
		}
		return 1
	})
	if at < 0 {
		return expr, "", false
	}
	return expr[:at], expr[at+width:], true
}

// unwrap returns the inside of an expression that is one parenthesised
// whole, "(a > 1)" but not "(a) + (b)" nor "sum(a)".
func unwrap(expr string) (string, bool) {
	if !strings.HasPrefix(expr, "(") || !strings.HasSuffix(expr, ")") {
		return "", false
	}
	closedAt := -1
	depth := 0
	for i := 0; i < len(expr) && closedAt < 0; i++ {
		switch expr[i] {
		case '"', '\'', '`':
			q := expr[i]
			for i++; i < len(expr) && expr[i] != q; i++ {
				if expr[i] == '\\' && q != '`' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				closedAt = i
			}
		}
	}
	if closedAt != len(expr)-1 {
		return "", false
	}
	return strings.TrimSpace(expr[1 : len(expr)-1]), true
}

func TestSignals(t *testing.T) {
	f := func(expr string, want []string, wantJoin string, wantErr bool) {
		t.Helper()
		got, join, err := signals(expr)
		if (err != nil) != wantErr {
			t.Fatalf("signals(%q) error = %v, want error %v", expr, err, wantErr)
		}
		if !wantErr && (!slices.Equal(got, want) || join != wantJoin) {
			t.Fatalf("signals(%q) = %q, %q; want %q, %q", expr, got, join, want, wantJoin)
		}
	}
	f(`up{job=~"zaits-.+"} == 0`, []string{`up{job=~"zaits-.+"}`}, "", false)
	f(`sum(a) / sum(b) > 0.2`, []string{`sum(a) / sum(b)`}, "", false)
	f(`sum(max by (partition) (x)) > 0 and sum(rate(y[10m])) == 0`, []string{`sum(max by (partition) (x))`, `sum(rate(y[10m]))`},
		`(sum(max by (partition) (x))) and (sum(rate(y[10m])))`, false)
	f(`a > 0 and on(job) b < 1e3`, []string{`a`, `b`}, `(a) and on(job) (b)`, false)
	f(`(a >= bool 1) unless ignoring (x, y) (b != -2)`, []string{`a`, `b`}, `(a) and ignoring (x, y) (b)`, false)
	f(`a > 1 or b > 2`, []string{`a`, `b`}, "", false)
	f(`(a > 1 or b > 2) and c < 3`, []string{`a`, `b`, `c`}, "", false)
	f(`(a > 1 and b > 2) and c < 3`, []string{`a`, `b`, `c`}, `((a) and (b)) and (c)`, false)
	f(`x{l="a and b > 3", m='or'} > 1`, []string{`x{l="a and b > 3", m='or'}`}, "", false)
	f(`histogram_quantile(0.9, sum by (le) (rate(h_bucket[10m]))) > 30`, []string{`histogram_quantile(0.9, sum by (le) (rate(h_bucket[10m])))`}, "", false)
	f(`band > 1 and order_total <= 2`, []string{`band`, `order_total`}, `(band) and (order_total)`, false)
	f(`(sum(a) - sum(b)) > 1`, []string{`sum(a) - sum(b)`}, "", false)
	f(`rate(a[5m])`, []string{`rate(a[5m])`}, "", false)
	f(`a > b`, nil, "", true)
	f(`a > 1 > 2`, nil, "", true)
}

// TestFilesHaveExpressions reads the real files: every alert splits into
// signals and every panel query uses known variables only (the live check
// in deploycheck_test.go queries them).
func TestFilesHaveExpressions(t *testing.T) {
	alerts, err := readAlerts(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if _, _, err := signals(a.Expr); err != nil {
			t.Errorf("alert %s: %v", a.Name, err)
		}
	}
	dashboards, _ := filepath.Glob(filepath.Join("grafana", "dashboards", "*.json"))
	if len(dashboards) == 0 {
		t.Fatal("no dashboard under grafana/dashboards")
	}
	for _, d := range dashboards {
		qs, err := readDashboard(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if _, err := expandGrafana(q.Expr); err != nil {
				t.Errorf("%s panel %q: %v", d, q.Panel, err)
			}
		}
		t.Logf("%s: %d queries; alerts.yml: %d alerts", d, len(qs), len(alerts))
	}
}
