package dispatcher

import (
	"fmt"
	"testing"
)

func TestResumeRecord(t *testing.T) {
	lows := map[string]int64{"we_slow": 100, "we_b": 180}
	s := encodeResume(200, lows)
	r := decodeResume(s)
	if r == nil || r.next != 200 || len(r.lows) != 2 || r.lows["we_slow"] != 100 || r.lows["we_b"] != 180 {
		t.Fatalf("round trip of %q: %+v", s, r)
	}
	f := func(offset int64, endpoint string, want bool) {
		t.Helper()
		if got := r.finished(offset, endpoint); got != want {
			t.Errorf("finished(%d, %s) = %v, want %v", offset, endpoint, got, want)
		}
	}
	f(99, "we_slow", true)   // below its lowest unfinished task
	f(100, "we_slow", false) // its lowest unfinished task
	f(150, "we_slow", false)
	f(150, "we_b", true)
	f(180, "we_b", false)
	f(150, "we_other", true)  // no unfinished task: every one below next finished
	f(200, "we_other", false) // at or after next: not read before
	f(5000, "we_slow", false)
	var none *resume
	if none.finished(1, "we_slow") {
		t.Error("without a record a task counted as finished")
	}

	// Records that are not ours, or damaged, are ignored (everything is
	// delivered from the committed offset on).
	for _, bad := range []string{"", "hello", resumeVersion, resumeVersion + "\nx", resumeVersion + "\n-1", resumeVersion + "\n10\n5", resumeVersion + "\n10\nx we_a", resumeVersion + "\n10\n-3 we_a"} {
		if decodeResume(bad) != nil {
			t.Errorf("decodeResume(%q) accepted", bad)
		}
	}
	// Too many endpoints for maxResumeMetadata: the record keeps the
	// lowest ones and moves its read position down to the first one cut,
	// so everything it no longer lists counts as unfinished.
	many := map[string]int64{}
	for i := range 500 {
		many[fmt.Sprintf("we_%024d", i)] = int64(1000 + i)
	}
	s = encodeResume(5000, many)
	r = decodeResume(s)
	if len(s) > maxResumeMetadata || r == nil || len(r.lows) == 0 || len(r.lows) >= 500 {
		t.Fatalf("cut record: %d bytes, %+v", len(s), r)
	}
	kept := len(r.lows)
	if r.next != int64(1000+kept) || r.lows[fmt.Sprintf("we_%024d", 0)] != 1000 || r.finished(int64(1000+kept), fmt.Sprintf("we_%024d", kept)) {
		t.Errorf("cut record kept %d endpoints, next %d: want the lowest kept and the rest unfinished", kept, r.next)
	}
	for ep, low := range many { // never calls an unfinished task finished
		if r.finished(low, ep) || r.finished(low+1, ep) {
			t.Fatalf("%s's unfinished task at %d counted as finished", ep, low)
		}
	}
	// An id that could break the format is cut like an overflow.
	if r := decodeResume(encodeResume(500, map[string]int64{"we a": 7, "we_b": 3})); r == nil || r.next != 7 || len(r.lows) != 1 || r.finished(7, "we a") {
		t.Errorf("id with a space: %+v", r)
	}
	if r := decodeResume(encodeResume(7, nil)); r == nil || r.next != 7 || len(r.lows) != 0 {
		t.Errorf("empty record: %+v", r)
	}
}
