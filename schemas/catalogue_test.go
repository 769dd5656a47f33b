package schemas

import "testing"

// The catalogue is the seed's nine types in the seed's order, then the
// system's own: webhook.endpoint.disabled (an endpoint was auto-disabled).
func TestCatalogueIsTheSeedsThenOurs(t *testing.T) {
	want := []string{"document.signed", "document.completed", "document.expired", "face.verified",
		"face.liveness.detected", "ocr.completed", "ocr.id.extracted", "user.credits.low", "api.rate.limited",
		"webhook.endpoint.disabled"}
	if len(Catalogue) != len(want) {
		t.Fatalf("%d types, want %d", len(Catalogue), len(want))
	}
	for i, e := range Catalogue {
		if e.Name != want[i] || e.Description == "" || e.Category == "" {
			t.Errorf("entry %d = %+v, want name %s", i, e, want[i])
		}
	}
}

func TestSubscriptions(t *testing.T) {
	f := func(sub string, valid bool, matches ...string) {
		t.Helper()
		if got := IsSubscription(sub); got != valid {
			t.Errorf("IsSubscription(%q) = %v, want %v", sub, got, valid)
		}
		for _, m := range matches {
			if !Matches(sub, m) {
				t.Errorf("Matches(%q, %q) = false", sub, m)
			}
		}
	}
	f("document.signed", true, "document.signed")
	f("document.*", true, "document.signed", "document.expired")
	f("ocr.id.*", true, "ocr.id.extracted")
	f("*", true, "face.verified")
	f("document", false)
	f("doc.*", false)
	f("document.**", false)
	f("*.signed", false)
	f("", false)
	f(".*", false)
	f("test", false)
	if Matches("document.*", "documents.x") || Matches("ocr.id.*", "ocr.completed") || Matches("face.verified", "face.liveness.detected") {
		t.Error("wildcard matched too much")
	}
}
