// Package chart draws the bench's charts as small, self-contained SVG
// documents: line charts (throughput over time, latency percentile plots)
// and horizontal bar charts (ceiling ratio). No scripts, no external fonts.
package chart

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Series is one named line.
type Series struct {
	Name   string
	Points []Point
}

// Point is one (x, y) value.
type Point struct{ X, Y float64 }

// Tick is an axis tick at value V labelled Label.
type Tick struct {
	V     float64
	Label string
}

// Line describes a line chart.
type Line struct {
	Title, XLabel, YLabel string
	Series                []Series
	// XTicks replaces the automatic x ticks (used for percentile axes).
	XTicks []Tick
	// YMin is the bottom of the y axis; the top is the data's maximum.
	YMin float64
	// LogY draws the y axis in powers of ten (values ≤ 0 sit at the bottom),
	// so a fast run stays readable next to a saturated one.
	LogY bool
	// Shade marks x ranges in grey with a label, e.g. the warm-up.
	Shade []Shade
}

// Shade is a grey band over [From, To] on the x axis.
type Shade struct {
	From, To float64
	Label    string
}

// Bar is one bar of a bar chart.
type Bar struct {
	Label string
	Value float64
	// Text is printed after the bar; default the value.
	Text string
}

// Bars describes a horizontal bar chart.
type Bars struct {
	Title, Unit string
	Bars        []Bar
	// Max is the value of a full-width bar; default the largest value.
	Max float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

const (
	width, height                = 1040, 460
	left, right, top, bottom     = 80, 300, 44, 56
	plotW, plotH                 = width - left - right, height - top - bottom
	fontAttrs                    = `font-family="DejaVu Sans, Arial, Helvetica, sans-serif"`
	axisColor, gridColor, txtCol = "#333", "#ddd", "#222"
)

// SVG renders the line chart.
func (c Line) SVG() string {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), c.YMin
	for _, s := range c.Series {
		for _, p := range s.Points {
			xmin, xmax, ymax = math.Min(xmin, p.X), math.Max(xmax, p.X), math.Max(ymax, p.Y)
		}
	}
	for _, t := range c.XTicks {
		xmin, xmax = math.Min(xmin, t.V), math.Max(xmax, t.V)
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0, 1
	}
	xmin = math.Min(xmin, 0) // time and percentile axes start at 0
	if xmax == xmin {
		xmax = xmin + 1
	}
	ystep := niceStep((ymax - c.YMin) / 5)
	ytop := c.YMin + math.Ceil((ymax-c.YMin)/ystep)*ystep
	if ytop <= c.YMin {
		ytop = c.YMin + 1
	}
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return top + plotH - (y-c.YMin)/(ytop-c.YMin)*plotH }
	var yticks []float64
	for y := c.YMin; y <= ytop+ystep/2; y += ystep {
		yticks = append(yticks, y)
	}
	if c.LogY {
		lo, hi := math.Inf(1), 0.0
		for _, s := range c.Series {
			for _, p := range s.Points {
				if p.Y > 0 {
					lo, hi = math.Min(lo, p.Y), math.Max(hi, p.Y)
				}
			}
		}
		if math.IsInf(lo, 0) {
			lo, hi = 1, 10
		}
		e0, e1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if e1 <= e0 {
			e1 = e0 + 1
		}
		py = func(y float64) float64 {
			v := e0
			if y > 0 {
				v = math.Max(math.Log10(y), e0)
			}
			return top + plotH - (v-e0)/(e1-e0)*plotH
		}
		yticks = yticks[:0]
		for e := e0; e <= e1; e++ {
			yticks = append(yticks, math.Pow(10, e))
		}
	}

	var b strings.Builder
	header(&b, c.Title)
	for _, sh := range c.Shade {
		x0, x1 := px(math.Max(sh.From, xmin)), px(math.Min(sh.To, xmax))
		if x1 > x0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#eee"/>`+"\n", x0, top, x1-x0, plotH)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#777" text-anchor="middle" %s>%s</text>`+"\n", (x0+x1)/2, top+14, fontAttrs, esc(sh.Label))
		}
	}
	// Y grid and labels.
	for _, y := range yticks {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", left, py(y), left+plotW, py(y), gridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="12" text-anchor="end" fill="%s" %s>%s</text>`+"\n", left-6, py(y)+4, txtCol, fontAttrs, Number(y))
	}
	// X ticks.
	ticks := c.XTicks
	if ticks == nil {
		step := niceStep((xmax - xmin) / 8)
		for x := math.Ceil(xmin/step) * step; x <= xmax+step/1000; x += step {
			ticks = append(ticks, Tick{V: x, Label: Number(x)})
		}
	}
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px(t.V), top, px(t.V), top+plotH, gridColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="12" text-anchor="middle" fill="%s" %s>%s</text>`+"\n", px(t.V), top+plotH+18, txtCol, fontAttrs, esc(t.Label))
	}
	axes(&b, c.XLabel, c.YLabel)
	// Lines and legend.
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], col)
		} else if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		}
		ly := top + 10 + i*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+plotW+12, ly, left+plotW+30, ly, col)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="%s" %s>%s</text>`+"\n", left+plotW+36, ly+4, txtCol, fontAttrs, esc(clip(s.Name, 42)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// SVG renders the bar chart.
func (c Bars) SVG() string {
	maxV := c.Max
	for _, bar := range c.Bars {
		maxV = math.Max(maxV, bar.Value)
	}
	if maxV <= 0 {
		maxV = 1
	}
	const barH, gap, labelW = 26, 12, 280
	h := top + len(c.Bars)*(barH+gap) + 30
	w := float64(width - labelW - 300)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", width, h, width, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="26" font-size="16" font-weight="bold" fill="%s" %s>%s</text>`+"\n", 16, txtCol, fontAttrs, esc(c.Title))
	for i, bar := range c.Bars {
		y := top + i*(barH+gap)
		bw := math.Max(bar.Value/maxV*w, 0)
		text := bar.Text
		if text == "" {
			text = Number(bar.Value) + " " + c.Unit
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="end" fill="%s" %s>%s</text>`+"\n", labelW-8, y+barH/2+5, txtCol, fontAttrs, esc(clip(bar.Label, 34)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y, bw, barH, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="13" fill="%s" %s>%s</text>`+"\n", float64(labelW)+bw+8, y+barH/2+5, txtCol, fontAttrs, esc(text))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func header(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="26" font-size="16" font-weight="bold" fill="%s" %s>%s</text>`+"\n", left, txtCol, fontAttrs, esc(title))
}

func axes(b *strings.Builder, xLabel, yLabel string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", left, top+plotH, left+plotW, top+plotH, axisColor)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", left, top, left, top+plotH, axisColor)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" text-anchor="middle" fill="%s" %s>%s</text>`+"\n", left+plotW/2, height-14, txtCol, fontAttrs, esc(xLabel))
	fmt.Fprintf(b, `<text x="18" y="%d" font-size="13" text-anchor="middle" fill="%s" transform="rotate(-90 18 %d)" %s>%s</text>`+"\n", top+plotH/2, txtCol, top+plotH/2, fontAttrs, esc(yLabel))
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// Number formats v compactly: 12k, 1.5M, 0.25, 120.
func Number(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trim(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e4:
		return trim(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 100 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return trim(fmt.Sprintf("%.2f", v))
	default:
		return trim(fmt.Sprintf("%.3f", v))
	}
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
