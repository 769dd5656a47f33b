package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goccy/go-json"
)

// Write writes results.json and report.md into dir.
func Write(dir string, cfg *Config, results []*Result, notes []string) error {
	b, err := json.MarshalIndent(map[string]any{"config": cfg, "results": results, "notes": notes}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Chaos matrix\n\n%d endpoints, %.0f events/s over HTTP (each event to every endpoint: %.0f deliveries/s), published in order by one producer that retries 503s and connection errors with the same ids (and moves to the other gateway on a connection error). A private Zaits of separate processes (2 gateways with their routers, 2 dispatchers, 1 analytics) on the 3-node cluster, RF 3, `min.insync.replicas=2`. Each case: %s of load, the fault, the victim kept down %s while the load goes on, restarted, %s more load, then the drain (until no delivery arrived for %s).\n\n",
		cfg.Endpoints, cfg.Rate, float64(cfg.Endpoints)*cfg.Rate, cfg.Warmup, cfg.Down, cfg.After, cfg.Drain)
	md.WriteString("\"Resumed\" is when the longest gap without a 202 (ingestion) or without any first arrival at the receiver (delivery) ended, in seconds after the fault, measured while the victim was down (target ≤ " + fmt.Sprintf("%.0f", cfg.Target.Seconds()) + " s); \"worst endpoint\" is the longest gap of any one endpoint. Lost = accepted deliveries that never arrived; duplicates are deliveries received again with the same delivery id (another id would be a second event); history = deliveries without their success row in ClickHouse after the drain.\n\n")
	md.WriteString("| case | run | victim | events accepted | lost | duplicates (same id / other id) | order violations | 503s | ingestion resumed | delivery resumed | worst endpoint | p99 / max publish→receipt while down | history missing | result |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		verdict := "ok"
		if len(r.Problems) > 0 {
			verdict = strings.Join(r.Problems, "; ")
		}
		fmt.Fprintf(&md, "| %s | %d | %s | %d | %d | %d / %d | %d | %d | %s | %s | %.1f s | %.1f s / %.1f s | %d | %s |\n",
			r.Case, r.Run, clip(r.Victim, 200), r.Events, r.Losses, r.Duplicates, r.DuplicatesOtherID, r.OrderViolations, r.Unavailable,
			resumed(r.IngestionStall), resumed(r.DeliveryStall), r.EndpointStall,
			r.FailoverP99/1000, r.FailoverMax/1000, r.HistoryMissing, verdict)
	}
	md.WriteString("\n## /readyz during each run\n\nTimes in seconds after the fault; only changes are listed.\n\n")
	for _, r := range results {
		fmt.Fprintf(&md, "- **%s #%d**:", r.Case, r.Run)
		comps := make([]string, 0, len(r.Readyz))
		for comp := range r.Readyz {
			comps = append(comps, comp)
		}
		sort.Strings(comps)
		for _, comp := range comps {
			var parts []string
			for _, c := range r.Readyz[comp] {
				s := fmt.Sprintf("%+.1f s → %d", c.T, c.Status)
				if c.Body != "" {
					s += " " + clip(c.Body, 160)
				}
				parts = append(parts, s)
			}
			if len(parts) > 0 {
				fmt.Fprintf(&md, " %s: %s;", comp, strings.Join(parts, ", "))
			}
		}
		md.WriteString("\n")
	}
	if len(notes) > 0 {
		md.WriteString("\n## Notes\n\n")
		for _, n := range notes {
			md.WriteString("- " + n + "\n")
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644)
}

func resumed(s Stall) string {
	if !s.Resumed {
		return fmt.Sprintf("not while down (%.1f s without)", s.Seconds)
	}
	return fmt.Sprintf("%.1f s", s.To)
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
