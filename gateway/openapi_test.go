package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fasthttp/router"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/zaits/webhooks/gateway/console"
	"github.com/zaits/webhooks/schemas"
)

// spec validates responses against schemas/openapi.json: the operation is
// found by method and path template, the response by status, and the body
// is validated with the JSON Schema 2020-12 schema the document gives it.
type spec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler

	mu    sync.Mutex
	cache map[string]*jsonschema.Schema
}

const specURL = "file:///openapi.json"

var (
	specOnce sync.Once
	theSpec  *spec
	specErr  error
)

func openAPISpec(t testing.TB) *spec {
	t.Helper()
	specOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemas.OpenAPI))
		if err != nil {
			specErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		if err := c.AddResource(specURL, doc); err != nil {
			specErr = err
			return
		}
		theSpec = &spec{doc: doc.(map[string]any), compiler: c, cache: map[string]*jsonschema.Schema{}}
	})
	if specErr != nil {
		t.Fatalf("schemas/openapi.json: %v", specErr)
	}
	return theSpec
}

func ptrEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// template returns the documented path template matching path.
func (s *spec) template(path string) (string, bool) {
	segs := strings.Split(path, "/")
	for tpl := range s.doc["paths"].(map[string]any) {
		ts := strings.Split(tpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		ok := true
		for i := range ts {
			if strings.HasPrefix(ts[i], "{") {
				ok = ok && segs[i] != ""
			} else {
				ok = ok && ts[i] == segs[i]
			}
		}
		if ok {
			return tpl, true
		}
	}
	return "", false
}

// responseSchema returns the JSON pointer of the response schema for the
// operation and status.
func (s *spec) responseSchema(method, rawPath string, status int) (string, error) {
	u, err := url.Parse(rawPath)
	if err != nil {
		return "", err
	}
	tpl, ok := s.template(u.Path)
	if !ok {
		if status != 404 {
			return "", fmt.Errorf("%s %s: undocumented path answered %d", method, u.Path, status)
		}
		return "/components/responses/NotFound/content/application~1json/schema", nil
	}
	item := s.doc["paths"].(map[string]any)[tpl].(map[string]any)
	op, ok := item[strings.ToLower(method)].(map[string]any)
	if !ok {
		if status != 405 {
			return "", fmt.Errorf("%s %s: undocumented method answered %d", method, tpl, status)
		}
		return "/components/responses/MethodNotAllowed/content/application~1json/schema", nil
	}
	resps := op["responses"].(map[string]any)
	key := strconv.Itoa(status)
	resp, ok := resps[key].(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s %s: status %d is not documented", method, tpl, status)
	}
	ptr := "/paths/" + ptrEscape(tpl) + "/" + strings.ToLower(method) + "/responses/" + key
	if ref, ok := resp["$ref"].(string); ok {
		ptr = strings.TrimPrefix(ref, "#")
	}
	return ptr + "/content/application~1json/schema", nil
}

// validate checks one response against the document.
func (s *spec) validate(method, path string, status int, contentType string, body []byte) error {
	ptr, err := s.responseSchema(method, path, status)
	if err != nil {
		return err
	}
	if contentType != "application/json" {
		return fmt.Errorf("%s %s: Content-Type %q, documented application/json", method, path, contentType)
	}
	s.mu.Lock()
	sch, ok := s.cache[ptr]
	if !ok {
		sch, err = s.compiler.Compile(specURL + "#" + ptr)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("compile %s: %w", ptr, err)
		}
		s.cache[ptr] = sch
	}
	s.mu.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: body is not JSON: %w", method, path, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s %s → %d does not match %s:\n%v\nbody: %s", method, path, status, ptr, err, body)
	}
	return nil
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	s := openAPISpec(t)
	if v, _ := s.doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi = %q, want 3.1.x", v)
	}
	// Every response schema of every operation compiles (refs resolve).
	var n int
	for tpl, item := range s.doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			o, ok := op.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			for status := range o["responses"].(map[string]any) {
				code, _ := strconv.Atoi(status)
				ptr, err := s.responseSchema(method, strings.NewReplacer("{endpoint_id}", "x", "{delivery_id}", "y").Replace(tpl), code)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.compiler.Compile(specURL + "#" + ptr); err != nil {
					t.Fatalf("%s %s %s: %v", method, tpl, status, err)
				}
				n++
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d responses documented", n)
	}
	// The validator really validates: a wrong shape is refused.
	f := func(method, path string, status int, body string, wantOK bool) {
		t.Helper()
		err := s.validate(method, path, status, "application/json", []byte(body))
		if (err == nil) != wantOK {
			t.Fatalf("validate(%s %s %d %s) = %v, want ok=%v", method, path, status, body, err, wantOK)
		}
	}
	f("DELETE", "/v1/webhooks/endpoints/we_x", 200, `{"success":true,"data":{"message":"Webhook endpoint deleted successfully","endpoint_id":"we_x"}}`, true)
	f("DELETE", "/v1/webhooks/endpoints/we_x", 200, `{"success":true,"data":{"message":"deleted","endpoint_id":"we_x"}}`, false)
	f("DELETE", "/v1/webhooks/endpoints/we_x", 200, `{"success":true,"data":{"message":"Webhook endpoint deleted successfully","endpoint_id":"we_x","extra":1}}`, false)
	f("GET", "/v1/webhooks/endpoints", 200, `{"success":true,"data":[],"pagination":{"page":1,"per_page":25,"total":0}}`, true)
	f("GET", "/v1/webhooks/endpoints", 200, `{"success":true,"data":[]}`, false)
	f("GET", "/v1/webhooks/endpoints", 200, `{"success":true,"data":[{"id":"we_abcdefghijklmnopqrstuvwx"}],"pagination":{"page":1,"per_page":25,"total":1}}`, false)
	f("GET", "/v1/webhooks/endpoints", 401, `{"success":false,"error":{"code":"unauthorized","message":"x"}}`, true)
	f("GET", "/v1/webhooks/endpoints", 401, `{"success":false,"error":{"code":"Unauthorized","message":"x"}}`, false)
	f("GET", "/v1/webhooks/endpoints", 500, `{"success":false,"error":{"code":"internal_error","message":"x"}}`, false)
	f("PATCH", "/v1/webhooks/endpoints", 405, `{"success":false,"error":{"code":"method_not_allowed","message":"x"}}`, true)
	f("GET", "/nope", 404, `{"success":false,"error":{"code":"not_found","message":"x"}}`, true)
	var doc map[string]any
	if err := json.Unmarshal(schemas.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
}

// The document and the route table agree: every route is documented and
// every documented operation is served.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	r := router.New()
	(&Gateway{}).routes(r)
	served := map[string]bool{}
	for method, paths := range r.List() {
		for _, p := range paths {
			if p != console.Prefix && !strings.HasPrefix(p, console.Prefix+"/") { // web pages, not API operations
				served[strings.ToLower(method)+" "+p] = true
			}
		}
	}
	documented := map[string]bool{}
	for tpl, item := range openAPISpec(t).doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			if method != "parameters" {
				documented[method+" "+tpl] = true
			}
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("%s is served but not in schemas/openapi.json", op)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("%s is documented but not served", op)
		}
	}
	if len(served) < 14 {
		t.Fatalf("only %d routes", len(served))
	}
}
