package suite

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/zaits/webhooks/bench/load"
)

// PrintSummary writes the end-of-run summary table: one line per run, then
// the headline numbers and the scenarios that did not run.
func (su *Suite) PrintSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trun\tmode\tconc\tachieved\tunit/s\terrors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	for _, r := range su.Results {
		for _, m := range r.Runs {
			l := m.Latency
			lat := fmt.Sprintf("%.2f\t%.2f\t%.2f\t%.2f\t%.2f", msf(l.P50), msf(l.P90), msf(l.P99), msf(l.P999), msf(l.Max))
			if l.Count == 0 { // no timed requests (a recovery job's run)
				lat = "—\t—\t—\t—\t—"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t\n", r.Scenario, m.Name, m.Mode, m.Concurrency,
				load.Thousands(m.UnitsPerSecond), m.Unit, m.Errors, lat)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	var cpu bool
	for _, r := range su.Results {
		for _, m := range r.Runs {
			if m.CPU != nil {
				if !cpu {
					fmt.Fprintln(w, "CPU seconds per 1,000 deliveries (cores used):")
					cpu = true
				}
				fmt.Fprintf(w, "%-10s %s: %s\n", r.Scenario, m.Name, m.CPU.Summary())
			}
		}
	}
	if cpu {
		fmt.Fprintln(w)
	}
	for _, r := range su.Results {
		for _, h := range r.Headline {
			fmt.Fprintf(w, "%-10s %-40s %s %s\n", r.Scenario, h.Name, formatValue(h.Value), h.Unit)
		}
		if r.Status != "ok" {
			fmt.Fprintf(w, "%-10s %s: %s\n", r.Scenario, r.Status, r.Reason)
		}
	}
}

func msf(us int64) float64 { return float64(us) / 1000 }
