package console_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/zaits/webhooks/internal/testenv"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console's screenshots into gateway/console/screenshots/ (else a temporary folder)")

// chromium is Debian's Chromium, installed by deploy/local/chromium.sh.
const chromium = "/usr/bin/chromium"

// browser is one headless Chromium tab. Every console error, uncaught
// exception and browser-log error of the page is collected: the test fails
// on any, except network entries for the HTTP errors the console shows on
// purpose (4xx answers of the API).
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing (%v): run deploy/local/chromium.sh (installs Debian's chromium with apt)", chromium, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// The machine's network is closed: nothing may try to reach out.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, shots: t.TempDir()}
	if *updateScreenshots {
		b.shots = "screenshots"
		if err := os.MkdirAll(b.shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.note(m)
		}
	}()
	if _, err := chromedp.Call(ctx, accessibility.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ps := b.takeProblems(); len(ps) > 0 {
			t.Errorf("the page reported %d problem(s):\n%s", len(ps), strings.Join(ps, "\n"))
		}
	})
	return b
}

func (b *browser) note(m chromedp.ConsoleMessage) {
	where := fmt.Sprintf("%s:%d", m.URL, m.Line+1)
	switch {
	case m.Type == chromedp.ConsoleError && m.Source == "network" && !strings.Contains(m.Text, "status of 5"):
		b.t.Logf("browser (expected API error): %s %s", m.Text, m.URL)
	case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException:
		b.mu.Lock()
		b.problems = append(b.problems, fmt.Sprintf("%s (%s %s)", m, m.Source, where))
		b.mu.Unlock()
	case m.Type == chromedp.ConsoleWarning:
		b.t.Logf("browser warning: %s (%s)", m.Text, where)
	}
}

func (b *browser) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	ps := b.problems
	b.problems = nil
	return ps
}

// noProblems fails now if the page reported an error so far.
func (b *browser) noProblems(step string) {
	b.t.Helper()
	if ps := b.takeProblems(); len(ps) > 0 {
		b.t.Fatalf("%s: the page reported:\n%s", step, strings.Join(ps, "\n"))
	}
}

func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
}

// eval runs JavaScript and decodes its result into T.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true.
func (b *browser) waitJS(timeout time.Duration, js string) {
	b.t.Helper()
	testenv.Eventually(b.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			return err
		}
		if !ok {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + "\n" + document.body.innerText`))
			return fmt.Errorf("not yet true: %s\nthe page shows %s", js, page)
		}
		return nil
	})
}

// text is the text of the first element matching a CSS selector ("" if none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, q))
}

// waitText waits until the element matching sel contains want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	w, _ := json.Marshal(want)
	b.waitJS(20*time.Second, fmt.Sprintf(`((document.querySelector(%s) || {}).textContent || "").includes(%s)`, q, w))
}

// keys sends key presses to the focused element.
func (b *browser) keys(k string, opts ...chromedp.KeyOption) {
	b.t.Helper()
	b.do("keys", chromedp.KeyEvent(k, opts...))
}

// shot saves a PNG of the whole page as name; a page showing a modal
// dialog is taken as the window shows it (the backdrop covers the window).
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	capture := chromedp.FullScreenshot(100)
	if eval[bool](b, `!!document.querySelector('dialog[open]')`) {
		capture = chromedp.CaptureScreenshot()
	}
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// rolesNeedingNames are the accessibility roles of controls: each needs an
// accessible name (a label, its text or aria-label).
var rolesNeedingNames = map[string]bool{
	"button": true, "link": true, "textbox": true, "combobox": true, "listbox": true, "checkbox": true,
	"radio": true, "spinbutton": true, "searchbox": true, "switch": true, "slider": true, "menuitem": true,
	"tab": true, "region": true, "dialog": true, "img": true, "figure": false,
}

// accessible checks the page as a keyboard and screen-reader user meets
// it: Tab, from the top, reaches every visible enabled interactive element,
// in the order they are on the page
// (links, buttons, inputs, selects, textareas, tabindex ≥ 0; inside an open
// modal dialog only its own), and every control in the browser's
// accessibility tree has a name.
func (b *browser) accessible(page string) {
	b.t.Helper()
	all := eval[[]string](b, `(() => {
		const modal = document.querySelector('dialog[open]');
		const els = [...(modal || document).querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
			.filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0 && !e.closest('[hidden], dialog:not([open])') && getComputedStyle(e).visibility !== 'hidden');
		els.forEach((e, i) => { e.dataset.kbd = String(i); });
		const start = document.createElement('span');
		start.tabIndex = -1; start.id = 'kbd-start';
		(modal || document.body).prepend(start);
		start.focus();
		return els.map((e) => (e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' "' + (e.getAttribute('aria-label') || e.textContent || e.value || '').trim().slice(0, 40) + '"'));
	})()`)
	if len(all) == 0 {
		b.t.Fatalf("%s: no interactive elements", page)
	}
	seen := map[string]bool{}
	var order []int // the elements, by document position, in the order Tab reached them
	// Some controls hold several Tab stops (a datetime-local input has one per part).
	for i := 0; i < 4*len(all)+20 && len(seen) < len(all); i++ {
		b.keys(kb.Tab)
		k := eval[string](b, `(document.activeElement && document.activeElement.dataset.kbd) || ""`)
		if k != "" && !seen[k] {
			seen[k] = true
			n, _ := strconv.Atoi(k)
			order = append(order, n)
		}
	}
	eval[bool](b, `(document.getElementById('kbd-start') || {remove(){}}).remove(), true`)
	var missing []string
	for i, d := range all {
		if !seen[fmt.Sprint(i)] {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		b.t.Errorf("%s: Tab does not reach %d of %d interactive elements: %v", page, len(missing), len(all), missing)
	}
	if !slices.IsSorted(order) {
		b.t.Errorf("%s: the Tab order is not the reading order: %v", page, order)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	tree, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		b.t.Fatal(err)
	}
	str := func(v *accessibility.Value) string {
		if v == nil || len(v.Value) == 0 {
			return ""
		}
		var s string
		if json.Unmarshal(v.Value, &s) != nil {
			return string(v.Value)
		}
		return s
	}
	var unnamed []string
	controls := 0
	for _, n := range tree.Nodes {
		role := str(n.Role)
		if n.Ignored || !rolesNeedingNames[role] {
			continue
		}
		controls++
		if strings.TrimSpace(str(n.Name)) == "" {
			unnamed = append(unnamed, fmt.Sprintf("%s (DOM node %d)", role, n.BackendDOMNodeID))
		}
	}
	if len(unnamed) > 0 {
		b.t.Errorf("%s: %d control(s) without an accessible name: %v", page, len(unnamed), unnamed)
	}
	if len(missing) == 0 && len(unnamed) == 0 {
		b.t.Logf("%s: Tab reaches all %d interactive elements; %d controls in the accessibility tree, all named", page, len(all), controls)
	}
}

// clearField empties an input, select or textarea (as select-all and delete would).
func clearField(css string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(css)
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); })()`, q))
}
