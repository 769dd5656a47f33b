package chart_test

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/zaits/webhooks/bench/chart"
)

// wellFormed parses svg as XML and returns its text content.
func wellFormed(t *testing.T, svg string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return text.String()
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if c, ok := tok.(xml.CharData); ok {
			text.Write(c)
			text.WriteByte('|')
		}
	}
}

func TestLineChart(t *testing.T) {
	svg := chart.Line{
		Title: "t <&> t", XLabel: "seconds", YLabel: "rate",
		Series: []chart.Series{{Name: "a & b", Points: []chart.Point{{X: 1, Y: 10}, {X: 2, Y: 30}}}, {Name: "one point", Points: []chart.Point{{X: 1, Y: 5}}}, {Name: "empty"}},
		Shade:  []chart.Shade{{From: 0, To: 1, Label: "warm-up"}},
	}.SVG()
	text := wellFormed(t, svg)
	for _, want := range []string{"t <&> t", "a & b", "one point", "warm-up", "seconds", "rate"} {
		if !strings.Contains(text, want) {
			t.Errorf("chart text lacks %q: %s", want, text)
		}
	}
	if strings.Count(svg, "<polyline") != 1 || strings.Count(svg, "<circle") != 1 {
		t.Errorf("want one polyline and one point marker:\n%s", svg)
	}
	wellFormed(t, chart.Line{Title: "no data"}.SVG())
}

func TestBarChart(t *testing.T) {
	svg := chart.Bars{Title: "ratio", Unit: "%", Max: 100, Bars: []chart.Bar{{Label: "ceiling", Value: 100}, {Label: "e2e", Value: 25, Text: "25% of it"}, {Label: "none", Value: 0}}}.SVG()
	text := wellFormed(t, svg)
	for _, want := range []string{"ratio", "ceiling", "100 %", "25% of it", "none"} {
		if !strings.Contains(text, want) {
			t.Errorf("chart text lacks %q: %s", want, text)
		}
	}
}

func TestNumber(t *testing.T) {
	f := func(in float64, want string) {
		t.Helper()
		if got := chart.Number(in); got != want {
			t.Errorf("Number(%v) = %q, want %q", in, got, want)
		}
	}
	f(0, "0")
	f(0.25, "0.25")
	f(12.5, "12.5")
	f(150, "150")
	f(12000, "12k")
	f(1500000, "1.5M")
}

func TestLogY(t *testing.T) {
	svg := chart.Line{Title: "log", LogY: true, Series: []chart.Series{{Name: "fast", Points: []chart.Point{{X: 0, Y: 0.5}, {X: 1, Y: 2}}}, {Name: "slow", Points: []chart.Point{{X: 0, Y: 100}, {X: 1, Y: 5000}}}}}.SVG()
	text := wellFormed(t, svg)
	for _, want := range []string{"|0.1|", "|1|", "|10|", "|100|", "|1000|", "|10k|"} {
		if !strings.Contains(text, want) {
			t.Errorf("log axis lacks tick %s: %s", want, text)
		}
	}
}
