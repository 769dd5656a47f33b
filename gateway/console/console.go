// Package console is the delivery console: a single-page web app, served by
// the gateway under /console, for an account's endpoints, delivery history,
// attempts, stats and recovery. It is plain HTML, CSS and JavaScript modules
// embedded in the binary (no build step, no CDN, no external fonts); the app
// talks only to the public /v1/webhooks/... API with the API key the person
// signs in with, kept in sessionStorage.
//
// GET /console answers the page (never cached: it names the current
// assets); GET /console/assets/<version>/<file> answers the files, cached
// for a year, immutable: <version> is a hash of every asset, so a new
// binary with other assets gets new addresses. Every answer carries a
// strict Content-Security-Policy (scripts, styles and requests from this
// origin only, no inline script or style, no framing).
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"sort"
	"strings"

	mux "github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

//go:embed static
var static embed.FS

// Prefix is where the console is served.
const Prefix = "/console"

// CSP is the Content-Security-Policy of every console answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Cache-Control values: the page is revalidated every time; versioned
// assets never change.
const (
	cachePage   = "no-cache"
	cacheAssets = "public, max-age=31536000, immutable"
)

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
}

// Console serves the embedded app.
type Console struct {
	page    []byte
	version string
	assets  map[string]asset // by file name under static/assets
}

// New reads the embedded files. It panics if they are malformed, which
// only a broken build can cause.
func New() *Console {
	c := &Console{assets: map[string]asset{}}
	sum := sha256.New()
	var names []string
	err := fs.WalkDir(static, "static/assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, strings.TrimPrefix(p, "static/assets/"))
		return nil
	})
	if err != nil {
		panic("console: embedded assets: " + err.Error())
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := static.ReadFile("static/assets/" + n)
		if err != nil {
			panic("console: " + err.Error())
		}
		ct := mime.TypeByExtension(path.Ext(n))
		switch path.Ext(n) { // not left to the system's MIME table
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		c.assets[n] = asset{body: b, contentType: ct}
		sum.Write([]byte(n))
		sum.Write([]byte{0})
		sum.Write(b)
		sum.Write([]byte{0})
	}
	c.version = hex.EncodeToString(sum.Sum(nil))[:16]
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		panic("console: " + err.Error())
	}
	// Every module is preloaded at once: the browser need not discover
	// them import by import.
	var preload bytes.Buffer
	for _, n := range names {
		if path.Ext(n) == ".js" && n != "main.js" {
			fmt.Fprintf(&preload, "<link rel=\"modulepreload\" href=\"%s/%s\">\n", c.AssetsPath(), n)
		}
	}
	page = bytes.ReplaceAll(page, []byte("{{preload}}\n"), preload.Bytes())
	c.page = bytes.ReplaceAll(page, []byte("{{assets}}"), []byte(c.AssetsPath()))
	return c
}

// AssetsPath is the current versioned assets folder, /console/assets/<version>.
func (c *Console) AssetsPath() string { return Prefix + "/assets/" + c.version }

// Register adds GET /console (the page) and /console/{path:*} (the assets)
// to r. The router serves "/console/" from neither: it is the API's 404.
func (c *Console) Register(r *mux.Router) {
	r.GET(Prefix, c.serve)
	r.GET(Prefix+"/{path:*}", c.serve)
}

// serve answers the page, a versioned asset, or 404.
func (c *Console) serve(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	p, _ := ctx.UserValue("path").(string)
	if p == "" {
		h.Set(fasthttp.HeaderCacheControl, cachePage)
		ctx.SetContentType("text/html; charset=utf-8")
		ctx.SetBody(c.page)
		return
	}
	if rest, ok := strings.CutPrefix(p, "assets/"+c.version+"/"); ok {
		if a, ok := c.assets[rest]; ok {
			h.Set(fasthttp.HeaderCacheControl, cacheAssets)
			ctx.SetContentType(a.contentType)
			ctx.SetBody(a.body)
			return
		}
	}
	// Like every other 404 of the gateway: the API's error envelope.
	h.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"success":false,"error":{"code":"not_found","message":"the console has no such file"}}`)
}
