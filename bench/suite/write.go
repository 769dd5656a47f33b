package suite

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/zaits/webhooks/bench/chart"
	"github.com/zaits/webhooks/bench/load"
)

// Write writes results.json, the charts and report.md into su.Dir.
func (su *Suite) Write() error {
	raw, err := json.MarshalIndent(su, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	files := map[string]string{"results.json": string(raw) + "\n"}
	charts := su.charts()
	for name, svg := range charts {
		files[name] = svg
	}
	files["report.md"] = su.markdown(charts)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(su.Dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// Load reads a results folder's results.json, so that Write can draw its
// charts and report again (after the chart code changed).
func Load(dir string) (*Suite, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil, err
	}
	var su Suite
	if err := json.Unmarshal(raw, &su); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	su.Dir = dir
	return &su, nil
}

// Ceiling is the closed-loop deliveries/s of the ceiling scenario, or 0.
func (su *Suite) Ceiling() float64 { return ceilingOf(su.Results) }

func chartName(kind, scenario string) string { return kind + "-" + scenario + ".svg" }

// charts renders every chart, keyed by file name.
func (su *Suite) charts() map[string]string {
	out := map[string]string{}
	for _, r := range su.Results {
		if len(r.Runs) == 0 {
			continue
		}
		var tput, lat []chart.Series
		var warm, end, last float64
		for _, m := range r.Runs {
			s := chart.Series{Name: m.Name}
			for _, p := range m.Timeline {
				s.Points = append(s.Points, chart.Point{X: p.T, Y: p.Rate})
			}
			tput = append(tput, s)
			warm = math.Max(warm, m.Warmup.Seconds())
			end = math.Max(end, (m.Warmup + m.Duration).Seconds())
			if n := len(m.Timeline); n > 0 {
				last = math.Max(last, m.Timeline[n-1].T)
			}
			if m.Latency.Count > 0 { // a recovery job's run has no requests of its own
				lat = append(lat, percentileSeries(m.Name+": request", m.Latency))
			}
			if m.ReceiverLatency != nil && m.ReceiverLatency.Count > 0 {
				lat = append(lat, percentileSeries(m.Name+": to receipt", *m.ReceiverLatency))
			}
		}
		unit := r.Runs[0].Unit
		out[chartName("throughput", r.Scenario)] = chart.Line{
			Title: r.Scenario + ": throughput over time", XLabel: "seconds since the run started", YLabel: unit + " per second",
			Series: tput, Shade: shades(warm, end, last),
		}.SVG()
		out[chartName("latency", r.Scenario)] = chart.Line{
			Title: r.Scenario + ": latency by percentile", XLabel: "percentile", YLabel: "milliseconds (log scale)",
			Series: lat, XTicks: percentileTicks, LogY: true,
		}.SVG()
	}
	if ceil := su.Ceiling(); ceil > 0 {
		bars := []chart.Bar{{Label: "ceiling closed-loop", Value: 100, Text: load.Thousands(ceil) + " deliveries/s = the ceiling"}}
		for _, r := range su.Results {
			if r.Scenario == "ceiling" {
				continue
			}
			for _, m := range r.Runs {
				if m.Unit != "deliveries" {
					continue
				}
				ratio := m.UnitsPerSecond / ceil * 100
				bars = append(bars, chart.Bar{
					Label: r.Scenario + " " + m.Name, Value: ratio,
					Text: fmt.Sprintf("%s deliveries/s = %.0f%% of the ceiling", load.Thousands(m.UnitsPerSecond), ratio),
				})
			}
		}
		if len(bars) == 1 {
			bars = append(bars, chart.Bar{Label: "e2e", Value: 0, Text: "not part of this run"})
		}
		out["ceiling-ratio.svg"] = chart.Bars{Title: "Deliveries/s through the system as a share of this machine's ceiling", Unit: "%", Bars: bars, Max: 100}.SVG()
	}
	return out
}

// shades marks the warm-up and, when a timeline goes on after the
// measured window (e2e drains), the time after publishing stopped.
func shades(warm, end, last float64) []chart.Shade {
	out := []chart.Shade{{From: 0, To: warm, Label: "warm-up (excluded)"}}
	if last > end+0.5 {
		out = append(out, chart.Shade{From: end, To: last, Label: "publishing stopped: drain"})
	}
	return out
}

// The percentile plot's x axis is log10(1/(1-p)): 0 = p0, 1 = p90, 2 = p99 …
var percentileTicks = []chart.Tick{{V: 0, Label: "0%"}, {V: 1, Label: "90%"}, {V: 2, Label: "99%"}, {V: 3, Label: "99.9%"}, {V: 4, Label: "99.99%"}, {V: 5, Label: "99.999%"}}

func percentileSeries(name string, l Latency) chart.Series {
	s := chart.Series{Name: name}
	for _, p := range l.Percentiles {
		if p.Percentile >= 100 {
			continue
		}
		x := -math.Log10(1 - p.Percentile/100)
		s.Points = append(s.Points, chart.Point{X: x, Y: float64(p.Micros) / 1000})
		// Stop once every sample is covered: the rest would repeat the maximum.
		if float64(l.Count)*(1-p.Percentile/100) < 1 {
			break
		}
	}
	return s
}

func ms(us int64) string {
	switch {
	case us >= 10_000:
		return fmt.Sprintf("%.0f ms", float64(us)/1000)
	case us >= 1_000:
		return fmt.Sprintf("%.1f ms", float64(us)/1000)
	default:
		return fmt.Sprintf("%.2f ms", float64(us)/1000)
	}
}

func (su *Suite) markdown(charts map[string]string) string {
	var b strings.Builder
	e := su.Environment
	fmt.Fprintf(&b, "# Zaits bench: %s, %s\n\n", su.Name, su.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %.1f GiB; took %s.\n\n", e.CPU, e.Cores, e.MemoryGiB, su.Duration.Round(time.Second))

	b.WriteString("## Headline\n\n| scenario | metric | value |\n|---|---|---|\n")
	for _, r := range su.Results {
		if r.Status != "ok" {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", r.Scenario, r.Status, cell(r.Reason))
		}
		for _, m := range r.Headline {
			fmt.Fprintf(&b, "| %s | %s | %s %s |\n", r.Scenario, m.Name, formatValue(m.Value), m.Unit)
		}
	}
	if _, ok := charts["ceiling-ratio.svg"]; ok {
		b.WriteString("\n![ceiling ratio](ceiling-ratio.svg)\n")
	}

	b.WriteString("\n## Environment\n\n| | |\n|---|---|\n")
	rows := [][2]string{
		{"CPU", e.CPU}, {"cores", fmt.Sprint(e.Cores)}, {"memory", fmt.Sprintf("%.1f GiB", e.MemoryGiB)},
		{"kernel", e.Kernel}, {"load average at start", e.LoadAvg}, {"Go", e.Go}, {"Kafka", e.Kafka},
		{"ClickHouse", e.ClickHouse}, {"git commit", e.GitCommit}, {"host", e.Host},
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], cell(r[1]))
	}
	if len(e.Topics) > 0 {
		b.WriteString("\nSystem topics (partitions): ")
		var parts []string
		for _, t := range sortedKeys(e.Topics) {
			parts = append(parts, fmt.Sprintf("`%s` %d", t, e.Topics[t]))
		}
		b.WriteString(strings.Join(parts, ", ") + "\n")
	}
	if len(e.Config) > 0 {
		b.WriteString("\n<details><summary>Bench configuration</summary>\n\n| flag | value |\n|---|---|\n")
		for _, k := range sortedKeys(e.Config) {
			fmt.Fprintf(&b, "| `-%s` | `%s` |\n", k, e.Config[k])
		}
		b.WriteString("\n</details>\n")
	}

	for _, r := range su.Results {
		fmt.Fprintf(&b, "\n## %s (%s)\n\n%s\n", r.Scenario, r.Status, r.About)
		if r.Reason != "" {
			fmt.Fprintf(&b, "\n**%s:** %s\n", r.Status, r.Reason)
		}
		if len(r.Runs) > 0 {
			b.WriteString("\n| run | path | mode | concurrency | target ops/s | achieved | ops/s | errors | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, m := range r.Runs {
				target := "max"
				if m.TargetRate > 0 {
					target = load.Thousands(m.TargetRate)
				}
				l := m.Latency
				lat := []string{ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)}
				if l.Count == 0 { // no timed requests (a recovery job's run)
					lat = []string{"—", "—", "—", "—", "—"}
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s %s/s | %s | %d | %s |\n",
					m.Name, cell(m.Path), m.Mode, m.Concurrency, target, load.Thousands(m.UnitsPerSecond), m.Unit,
					load.Thousands(m.OpsPerSecond), m.Errors, strings.Join(lat, " | "))
			}
			for _, m := range r.Runs {
				if m.FirstError != "" {
					fmt.Fprintf(&b, "\nFirst error in %s: `%s`\n", m.Name, cell(m.FirstError))
				}
			}
			var withReceiver bool
			for _, m := range r.Runs {
				withReceiver = withReceiver || m.Receiver != nil
			}
			if withReceiver {
				b.WriteString("\nReceiver checks (every delivery verified):\n\n| run | delivered | signature failures | malformed | order violations | duplicates | losses | unexpected | accepted→receipt p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
				for _, m := range r.Runs {
					if m.Receiver == nil {
						continue
					}
					rp, l := m.Receiver, m.ReceiverLatency
					fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s |\n", m.Name, load.Thousands(float64(rp.Delivered)),
						rp.SignatureFailures, rp.Malformed, rp.OrderViolations, rp.Duplicates, rp.Losses, rp.Unexpected, ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max))
				}
			}
			b.WriteString(cpuTable(r.Runs))
			fmt.Fprintf(&b, "\n![throughput](%s)\n\n![latency](%s)\n", chartName("throughput", r.Scenario), chartName("latency", r.Scenario))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		if len(r.Notes) > 0 {
			b.WriteString("\n")
		}
	}
	b.WriteString("\n## Reading the charts\n\n" +
		"- **throughput-*.svg**: units per second in each 1 s interval; the grey band is the warm-up, excluded from every number.\n" +
		"- **latency-*.svg**: latency (ms) by percentile on a log axis, so the tail (99%, 99.9%) is as wide as the median. " +
		"Open-loop latency is measured from when each request was due, so a stall shows up as a rising tail, not as fewer samples (coordinated omission corrected). " +
		"\"to receipt\" is from when the event was due to be sent (ceiling) or published (e2e, failures) to the receiver's arrival time; the y axis is logarithmic.\n" +
		"- **ceiling-ratio.svg**: deliveries/s through the whole system (e2e, failures) as a share of the ceiling: a bare fasthttp client signing and posting straight to the same receiver on the same machine.\n")
	return b.String()
}

func formatValue(v float64) string {
	if v == math.Trunc(v) || math.Abs(v) >= 100 {
		return load.Thousands(v)
	}
	return fmt.Sprintf("%.3g", v)
}

func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ") }
