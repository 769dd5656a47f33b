package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/zaits/webhooks/gateway/console"
	"github.com/zaits/webhooks/internal/testenv"
)

// The whole console in a real browser against the real system: sign in,
// create an endpoint (bad input first), send a test, publish events, watch
// them arrive, filter, open a delivery, edit, rotate, delete, sign out, and
// a 401 back to sign-in; with no JavaScript error, every control reachable
// by keyboard and named.
func TestConsoleInABrowser(t *testing.T) {
	sys := startSystem(t)
	rc := newReceiver(t)
	b := newBrowser(t)

	// The page itself: strict headers, the sign-in form.
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(sys.url+"/console"))
	if err != nil {
		t.Fatal(err)
	}
	if csp, _ := resp.Headers["Content-Security-Policy"].(string); csp != console.CSP {
		t.Fatalf("Content-Security-Policy = %q", csp)
	}
	b.waitText("h1", "Sign in")
	b.accessible("sign-in")
	b.shot("01-sign-in.png")

	// A wrong key: the API's own message at the key field.
	b.do("type a wrong key", chromedp.Focus(chromedp.CSS("#api-key")), chromedp.KeyEvent("zk_not_a_key"), chromedp.KeyEvent(kb.Enter))
	b.waitText(".field-error", "a valid API key is required")
	if got := eval[bool](b, `document.querySelector('#api-key').getAttribute('aria-invalid') === 'true'`); !got {
		t.Fatal("the key field is not marked invalid")
	}
	// The right key, by keyboard.
	b.do("type the key", clearField("#api-key"), chromedp.Focus(chromedp.CSS("#api-key")), chromedp.KeyEvent(sys.key), chromedp.KeyEvent(kb.Enter))
	b.waitText("h1", "Endpoints")
	b.waitText("#endpoint-list", "No endpoints yet")
	if got := eval[string](b, `sessionStorage.getItem('zaits.console.apiKey')`); got != sys.key {
		t.Fatalf("sessionStorage key = %q", got)
	}
	if got := eval[string](b, `localStorage.length + ' ' + document.cookie + ' ' + location.href`); strings.Contains(got, sys.key) || !strings.HasPrefix(got, "0 ") {
		t.Fatalf("the key leaked into localStorage, a cookie or the URL: %q", got)
	}
	b.accessible("endpoints (empty)")
	b.noProblems("sign-in")

	// Create, bad input first: the API's messages at the fields they name.
	b.do("new endpoint", chromedp.Click(chromedp.CSS("a[href='#/endpoints/new']")))
	b.waitText("h1", "New endpoint")
	b.waitJS(10*time.Second, `!!document.querySelector('#ev-document-signed')`)
	b.do("bad url", chromedp.SendKeys(chromedp.CSS("input[name=url]"), "not-a-url"), chromedp.SendKeys(chromedp.ID("events-other"), "nope.*"))
	b.do("submit", chromedp.Click(chromedp.CSS("button[type=submit]")))
	b.waitText("[data-field=url] .field-error", "must be an absolute URL")
	b.waitText("[data-field=events] .field-error", `events[0]: "nope.*" is not an event type`)
	if msg := b.text("[data-form-alert]"); !strings.Contains(msg, "url: must be an absolute URL") {
		t.Fatalf("form alert = %q", msg)
	}
	b.accessible("endpoint form")
	b.shot("02-endpoint-form-errors.png")

	b.do("fix the form",
		clearField("input[name=url]"), chromedp.SendKeys(chromedp.CSS("input[name=url]"), rc.url),
		clearField("#events-other"),
		chromedp.Click(chromedp.ID("ev-document-signed")), chromedp.Click(chromedp.ID("ev-face-verified")),
		chromedp.SendKeys(chromedp.CSS("textarea[name=description]"), "Console test receiver"),
		chromedp.Click(chromedp.CSS("button[type=submit]")))
	// The secret, once.
	b.waitJS(20*time.Second, `!!document.querySelector('dialog[open] #dlg-secret')`)
	secret := eval[string](b, `document.querySelector('#dlg-secret').value`)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	b.accessible("secret dialog")
	b.shot("03-secret-shown-once.png")
	b.do("close the secret", chromedp.Click(chromedp.CSS("dialog[open] .btn-primary")))
	b.waitText("h1", rc.url)
	id := eval[string](b, `decodeURIComponent(location.hash.split('/')[2])`)
	if !regexp.MustCompile(`^we_`).MatchString(id) || strings.Contains(b.text("main"), secret) {
		t.Fatalf("endpoint page of %q shows the secret again or has no id", id)
	}

	// Send a test: the receiver's status, time and body.
	b.do("send test", chromedp.Click(chromedp.CSS("form[aria-label='Send a test event'] button[type=submit]")))
	b.waitText("#test-result", "HTTP 200")
	if got := b.text("#test-result pre"); got != "OK" {
		t.Fatalf("test response body %q", got)
	}

	// Publish events over the API: 6 delivered, 3 refused by the receiver
	// (five attempts each, then failed), 1 of a type the endpoint does not take.
	var events []map[string]any
	for i := range 6 {
		events = append(events, map[string]any{"type": "document.signed", "data": map[string]any{"document_id": fmt.Sprintf("doc_%d", i)}})
	}
	for i := range 3 {
		events = append(events, map[string]any{"type": "face.verified", "data": map[string]any{"fail": true, "n": i}})
	}
	events = append(events, map[string]any{"type": "ocr.completed", "data": map[string]any{}})
	if code, v := sys.call(t, "POST", "/v1/events/batch", map[string]any{"events": events}); code != 202 {
		t.Fatalf("publish: %d %v", code, v)
	}
	// The open page refreshes by itself: 1 test + 9 deliveries, 3 failed.
	b.waitJS(90*time.Second, `document.querySelector('#deliveries').dataset.total === '10' && document.querySelectorAll('#deliveries .badge-failed').length === 3`)
	b.noProblems("endpoint page")
	b.waitJS(30*time.Second, `document.querySelectorAll('#charts figure').length === 3 && document.querySelectorAll('#charts rect').length > 0`)

	// Filters, by keyboard: status "Failed" (typeahead in the closed select).
	b.do("filter failed", chromedp.Focus(chromedp.ID("filter-status")), chromedp.KeyEvent("f"))
	b.waitJS(20*time.Second, `document.querySelector('#deliveries').dataset.total === '3' && location.hash.includes('status=failed')`)
	b.do("filter document.signed", clearField("#filter-status"), chromedp.SetValue(chromedp.ID("filter-event-type"), "document.signed"))
	eval[bool](b, `document.querySelector('#filter-event-type').dispatchEvent(new Event('change')), true`)
	b.waitJS(20*time.Second, `document.querySelector('#deliveries').dataset.total === '6' && document.querySelectorAll('#deliveries .badge-success').length === 6`)
	b.do("filter face.verified", chromedp.SetValue(chromedp.ID("filter-event-type"), "face.verified"))
	eval[bool](b, `document.querySelector('#filter-event-type').dispatchEvent(new Event('change')), true`)
	b.waitJS(20*time.Second, `document.querySelector('#deliveries').dataset.total === '3' && document.querySelectorAll('#deliveries .badge-failed').length === 3`)
	b.do("pause refresh", chromedp.Click(chromedp.CSS("button[aria-pressed]")))
	b.accessible("endpoint page")
	b.do("clear filters", clearField("#filter-event-type"))
	eval[bool](b, `document.querySelector('#filter-event-type').dispatchEvent(new Event('change')), true`)
	b.waitJS(20*time.Second, `document.querySelector('#deliveries').dataset.total === '10'`)
	// Another chart window: 24 h in 15-minute buckets.
	b.do("chart window", chromedp.SetValue(chromedp.ID("chart-window"), "24h"))
	eval[bool](b, `document.querySelector('#chart-window').dispatchEvent(new Event('change')), true`)
	b.waitJS(20*time.Second, `location.hash.includes('window=24h') && document.querySelector('#chart-totals').textContent.startsWith('10 deliveries') && document.querySelectorAll('#charts figure').length === 3`)
	b.shot("04-endpoint.png")

	// One failed delivery: five attempts with status, latency, error, excerpt.
	b.do("filter failed again", chromedp.Focus(chromedp.ID("filter-status")), chromedp.KeyEvent("f"))
	b.waitJS(20*time.Second, `document.querySelector('#deliveries').dataset.total === '3'`)
	b.do("open a delivery", chromedp.Click(chromedp.CSS("#deliveries tbody a")))
	b.waitText("h1", "Delivery")
	b.waitJS(20*time.Second, `document.querySelectorAll('#attempts tbody tr').length === 5`)
	att := b.text("#attempts tbody tr")
	for _, want := range []string{"500", "http_status", "the receiver refused this event on purpose", "failed"} {
		if !strings.Contains(b.text("#attempts tbody"), want) {
			t.Fatalf("attempts table lacks %q: %s", want, att)
		}
	}
	b.accessible("delivery page")
	b.shot("05-delivery.png")
	b.noProblems("delivery page")

	// Resend it: queued as attempt 6, which the history shows once made
	// (the receiver refuses it again, so it is recorded failed).
	b.do("resend", chromedp.Click(chromedp.CSS(".toolbar .btn-primary")))
	b.waitText("#resend-result", "Queued as attempt 6")
	testenv.Eventually(t, 60*time.Second, func() error {
		b.do("reload the delivery", chromedp.Reload())
		b.waitJS(20*time.Second, `document.querySelectorAll('#attempts tbody tr').length >= 5`)
		if n := eval[int](b, `document.querySelectorAll('#attempts tbody tr').length`); n < 6 {
			return fmt.Errorf("%d attempts shown", n)
		}
		return nil
	})
	b.noProblems("resend")

	// Edit: the description changes.
	b.do("back to the endpoint", chromedp.Click(chromedp.ID("crumb-endpoint")))
	b.waitText("h1", rc.url)
	b.do("edit", chromedp.Click(chromedp.CSS("a[href$='/edit']")))
	b.waitText("h1", "Edit endpoint")
	b.do("change description", clearField("textarea[name=description]"),
		chromedp.SendKeys(chromedp.CSS("textarea[name=description]"), "Renamed in the console"),
		chromedp.Click(chromedp.CSS("button[type=submit]")))
	b.waitText(".facts", "Renamed in the console")
	if code, v := sys.call(t, "GET", "/v1/webhooks/endpoints/"+id, nil); code != 200 || v["data"].(map[string]any)["description"] != "Renamed in the console" {
		t.Fatalf("after edit: %d %v", code, v)
	}

	// Recover the endpoint's failed deliveries of the last hour: a job,
	// listed with its counts, completed.
	b.do("recover", chromedp.Click(chromedp.CSS("form[aria-labelledby='recover-title'] button[type=submit]")))
	b.waitJS(60*time.Second, `[...document.querySelectorAll('#jobs tr[data-job]')].some(r => r.textContent.includes('recover') && r.textContent.includes('completed'))`)
	if row := b.text("#jobs tr[data-job]"); !strings.Contains(row, "recover") {
		t.Fatalf("jobs table: %s", row)
	}
	b.noProblems("recover")

	// The list: URL, description, events, status, success rate, last delivery.
	b.do("the list", chromedp.Click(chromedp.CSS("#nav a[href='#/endpoints']")))
	b.waitJS(20*time.Second, `!!document.querySelector('#endpoint-list tbody tr')`)
	row := b.text("#endpoint-list tbody tr")
	for _, want := range []string{rc.url, "Renamed in the console", "document.signed", "face.verified", "active", "70.0 %", "ago"} {
		if !strings.Contains(row, want) {
			t.Fatalf("the list's row lacks %q: %s", want, row)
		}
	}
	b.accessible("endpoints")
	b.shot("06-endpoints.png")
	b.do("open the endpoint", chromedp.Click(chromedp.CSS("#endpoint-list tbody a")))
	b.waitText("h1", rc.url)

	// Rotate: confirm, the new secret once.
	b.do("rotate", chromedp.Click(chromedp.CSS("button.btn:not(.btn-danger):not(.btn-primary):not(.btn-quiet)")))
	b.waitText("dialog[open] h2", "Rotate the signing secret?")
	b.accessible("confirmation dialog")
	b.do("confirm", chromedp.Click(chromedp.CSS("dialog[open] .btn-primary")))
	b.waitJS(20*time.Second, `!!document.querySelector('dialog[open] #dlg-secret')`)
	if s2 := eval[string](b, `document.querySelector('#dlg-secret').value`); !strings.HasPrefix(s2, "whsec_") || s2 == secret {
		t.Fatalf("rotated secret %q (was %q)", s2, secret)
	}
	b.keys(kb.Escape)
	b.waitJS(10*time.Second, `!document.querySelector('dialog[open]')`)

	// Delete, by keyboard in the confirmation: Tab from Cancel to Delete, Enter.
	b.do("delete", chromedp.Click(chromedp.CSS("button.btn-danger")))
	b.waitText("dialog[open] h2", "Delete this endpoint?")
	b.keys(kb.Tab)
	b.keys(kb.Enter)
	b.waitText("h1", "Endpoints")
	b.waitText("main", "was deleted")
	if code, _ := sys.call(t, "GET", "/v1/webhooks/endpoints/"+id, nil); code != 404 {
		t.Fatalf("after delete: %d", code)
	}

	// Sign out: the key is gone, every page is the sign-in.
	b.do("sign out", chromedp.Click(chromedp.ID("sign-out")))
	b.waitText("h1", "Sign in")
	if got := eval[string](b, `sessionStorage.getItem('zaits.console.apiKey') || ''`); got != "" {
		t.Fatalf("key after sign-out: %q", got)
	}
	b.do("endpoints while signed out", chromedp.Navigate(sys.url+"/console#/endpoints"))
	b.waitText("h1", "Sign in")

	// A 401 on any call returns to sign-in, saying why.
	eval[bool](b, `sessionStorage.setItem('zaits.console.apiKey', 'zk_revoked'), location.hash = '#/endpoints', true`)
	b.waitText("main", "Please sign in again")
	b.waitText("h1", "Sign in")
	b.noProblems("sign-out")
	t.Logf("receiver got %d requests", rc.requests())
}

// The handler alone: the page, versioned assets, 404s, and the headers of each.
func TestHandlerServesThePageAndVersionedAssets(t *testing.T) {
	sys := startSystem(t)
	c := console.New()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(sys.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	f := func(path string, status int, contentType, cache string) string {
		t.Helper()
		resp, body := get(path)
		h := resp.Header
		if resp.StatusCode != status || h.Get("Content-Type") != contentType || h.Get("Cache-Control") != cache ||
			h.Get("Content-Security-Policy") != console.CSP || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("GET %s = %d %v", path, resp.StatusCode, h)
		}
		return body
	}
	page := f("/console", 200, "text/html; charset=utf-8", "no-cache")
	// The page names the current assets and has no inline script or style.
	if !strings.Contains(page, `src="`+c.AssetsPath()+`/main.js"`) || !strings.Contains(page, `href="`+c.AssetsPath()+`/console.css"`) {
		t.Fatalf("page does not name %s: %s", c.AssetsPath(), page)
	}
	if n := strings.Count(page, "<script"); n != strings.Count(page, "<script type=\"module\" src=") || strings.Contains(page, "style=") || strings.Contains(page, "<style") {
		t.Fatalf("inline script or style in the page: %s", page)
	}
	js := f("/console/assets/"+strings.TrimPrefix(c.AssetsPath(), "/console/assets/")+"/main.js", 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable")
	if !strings.Contains(js, "import") {
		t.Fatalf("main.js: %s", js)
	}
	f(c.AssetsPath()+"/console.css", 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable")
	// No other origin anywhere: no CDN, no fonts, no analytics.
	for _, name := range []string{"main.js", "api.js", "dom.js", "chart.js", "endpoint.js", "endpoints.js", "delivery.js", "recovery.js", "console.css"} {
		_, body := get(c.AssetsPath() + "/" + name)
		for _, m := range regexp.MustCompile(`(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindAllString(body, -1) {
			if m != "http://www.w3.org" && m != "https://example.com" { // the SVG namespace; a placeholder text
				t.Errorf("%s refers to another origin: %s", name, m)
			}
		}
	}
	for _, p := range []string{"/console/assets/0000000000000000/main.js", c.AssetsPath() + "/nope.js", "/console/nope", "/console/assets/" + c.AssetsPath()} {
		if body := f(p, 404, "application/json", "no-store"); !strings.HasPrefix(body, `{"success":false,"error":{"code":"not_found"`) {
			t.Fatalf("GET %s: %s", p, body)
		}
	}
	// The API's 404 is untouched next door.
	resp, body := get("/consoles")
	var v map[string]any
	if resp.StatusCode != 404 || json.Unmarshal([]byte(body), &v) != nil || v["success"] != false {
		t.Fatalf("GET /consoles = %d %s", resp.StatusCode, body)
	}
}
