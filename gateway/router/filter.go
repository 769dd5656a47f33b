package router

import (
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// matching keeps, in place, the subscribed endpoints whose filter lets ev
// through. Each endpoint's filter was compiled when its record was applied
// (endpoint.Entry.CompiledFilter); fe is reset for ev only when the first
// filter is met and decodes ev's data at most once, for all the filters that
// read it. An endpoint without a filter costs one nil check.
func matching(subs []*endpoint.Entry, ev *schemas.Event, fe *schemas.FilterEvent) []*endpoint.Entry {
	kept := subs[:0]
	reset := false
	for _, e := range subs {
		if f := e.CompiledFilter(); f != nil {
			if !reset {
				fe.Reset(ev)
				reset = true
			}
			if !f.Match(fe) {
				continue
			}
		}
		kept = append(kept, e)
	}
	return kept
}
