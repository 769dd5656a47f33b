package analytics

import (
	"testing"
	"time"
)

func TestFailingSince(t *testing.T) {
	h := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	f := func(lastOK string, hours, fails []string, want string) {
		t.Helper()
		var hs, fs []time.Time
		for i := range hours {
			hs, fs = append(hs, h(hours[i])), append(fs, h(fails[i]))
		}
		var ok time.Time
		if lastOK != "" {
			ok = h(lastOK)
		}
		got, found := failingSince(ok, hs, fs)
		if want == "" {
			if found {
				t.Fatalf("failingSince = %s, want none", got)
			}
			return
		}
		if !found || !got.Equal(h(want)) {
			t.Fatalf("failingSince = %s %v, want %s", got, found, want)
		}
	}
	z := "1970-01-01T00:00:00Z"
	// Failures in the hour of the last success do not count (conservative).
	f("2026-11-01T10:30:00Z", []string{"2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", "2026-11-02T09:00:00Z"},
		[]string{"2026-11-01T10:10:00Z", "2026-11-01T11:05:00Z", "2026-11-02T09:01:00Z"}, "2026-11-01T11:05:00Z")
	// Never succeeded: the first failure.
	f("", []string{"2026-11-03T00:00:00Z", "2026-11-01T00:00:00Z"}, []string{"2026-11-03T00:10:00Z", "2026-11-01T00:20:00Z"}, "2026-11-01T00:20:00Z")
	// Hours without failures (0) are skipped; none at all: none.
	f("2026-11-01T10:30:00Z", []string{"2026-11-01T12:00:00Z"}, []string{z}, "")
	f("", nil, nil, "")
}
