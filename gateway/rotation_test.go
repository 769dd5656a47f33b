package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zaits/webhooks/internal/testenv"
)

// The seed's own verification functions (testdata/webhooks-api.md is the
// seed's document), cut out of its Node, Python and PHP examples.
var seedSnippets = []struct {
	lang, file string
	cut        *regexp.Regexp
	harness    string // runs the cut-out function on every case of the JSON file argv
	command    []string
}{
	{
		lang: "node", file: "verify.js",
		cut: regexp.MustCompile(`(?s)const crypto = require\("crypto"\);\n\nfunction verifyWebhookSignature\(.*?\n}\n`),
		harness: `
const cases = JSON.parse(require("fs").readFileSync(process.argv[2]));
for (const c of cases) console.log(verifyWebhookSignature(Buffer.from(c.payload, "base64"), c.signature, c.secret));
`,
		command: []string{"node"},
	},
	{
		lang: "python", file: "verify.py",
		cut: regexp.MustCompile(`(?s)import hmac\nimport hashlib\n.*?def verify_webhook_signature\(.*?return f'sha256=\{expected_signature\}' == signature\n`),
		harness: `
import base64, json, sys
for c in json.load(open(sys.argv[1])):
    print("true" if verify_webhook_signature(base64.b64decode(c["payload"]), c["signature"], c["secret"]) else "false")
`,
		command: []string{"python3"},
	},
	{
		lang: "php", file: "verify.php",
		cut: regexp.MustCompile(`(?s)function verifyWebhookSignature\(\$payload, \$signature, \$secret\) \{.*?\n}\n`),
		harness: `
foreach (json_decode(file_get_contents($argv[1]), true) as $c) {
    echo verifyWebhookSignature(base64_decode($c["payload"]), $c["signature"], $c["secret"]) ? "true" : "false", "\n";
}
`,
		command: []string{"php"},
	},
}

// verifyCase is one check: does the seed's function accept signature of
// payload under secret?
type verifyCase struct {
	Payload   string `json:"payload"` // base64
	Signature string `json:"signature"`
	Secret    string `json:"secret"`
	want      bool
	what      string
}

// A rotation that no receiver using the seed's snippet notices: a receiver
// that keeps the old secret verifies X-Zaits-Signature throughout the
// overlap; one that switched to the new secret verifies
// X-Zaits-Signature-New during the overlap (X-Zaits-Signature after it).
// Checked with the seed's own Node, Python and PHP functions run by real
// node, python3 and php (deploy/local/verifiers.sh installs them).
func TestRotationThroughTheSeedsSnippets(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("testdata", "webhooks-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	kc := testenv.Kafka(t)
	g := startAPI(t, testConfig(kc, receiverConfig))
	rc := newReceiver(t, 200)
	c := create(t, g, keyA, fmt.Sprintf(`{"url": %q, "events": ["*"]}`, rc.url))
	id, oldSecret := c["id"].(string), c["secret"].(string)
	send := func() (sig, sigNew, payload string) {
		t.Helper()
		want(t, call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/test", `{"event_type": "document.signed"}`), 200, "")
		req, body := rc.last()
		return req.Header.Get("X-Zaits-Signature"), req.Header.Get("X-Zaits-Signature-New"), base64.StdEncoding.EncodeToString(body)
	}
	// The receiver's own choice of header: the seed's, or during an
	// overlap the new secret's header when it is there.
	switched := func(sig, sigNew string) string {
		if sigNew != "" {
			return sigNew
		}
		return sig
	}

	before, beforeNew, p1 := send()
	r := call(t, g, keyA, "POST", "/v1/webhooks/endpoints/"+id+"/secret/rotate", "")
	want(t, r, 200, "")
	newSecret := r.data()["secret"].(string)
	during, duringNew, p2 := send()
	want(t, call(t, g, keyA, "DELETE", "/v1/webhooks/endpoints/"+id+"/secret/previous", ""), 200, "")
	after, afterNew, p3 := send()
	if beforeNew != "" || duringNew == "" || afterNew != "" {
		t.Fatalf("X-Zaits-Signature-New: before %q, during %q, after %q; want only during the overlap", beforeNew, duringNew, afterNew)
	}
	cases := []verifyCase{
		{p1, before, oldSecret, true, "before the rotation, the secret shown at creation"},
		{p2, during, oldSecret, true, "during the overlap, a receiver that kept the old secret"},
		{p2, switched(during, duringNew), newSecret, true, "during the overlap, a receiver that switched to the new secret"},
		{p2, during, newSecret, false, "during the overlap, the new secret on X-Zaits-Signature (use X-Zaits-Signature-New)"},
		{p3, after, newSecret, true, "after the overlap, the new secret"},
		{p3, switched(after, afterNew), newSecret, true, "after the overlap, the switched receiver's code unchanged"},
		{p3, after, oldSecret, false, "after the overlap, the old secret no longer verifies"},
		{p1, before, newSecret, false, "the new secret does not verify what the old one signed"},
	}
	file := filepath.Join(t.TempDir(), "cases.json")
	b, _ := json.Marshal(cases)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range seedSnippets {
		fn := s.cut.Find(seed)
		if fn == nil {
			t.Fatalf("%s: the verification function is not in the seed document", s.lang)
		}
		src := string(fn) + s.harness
		if s.lang == "php" {
			src = "<?php\n" + src
		}
		script := filepath.Join(t.TempDir(), s.file)
		if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(s.command[0], append(s.command[1:], script, file)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s\n(install the runtimes with deploy/local/verifiers.sh)", s.command[0], script, err, out)
		}
		got := strings.Fields(string(out))
		if len(got) != len(cases) {
			t.Fatalf("%s answered %d lines for %d cases: %s", s.lang, len(got), len(cases), out)
		}
		for i, c := range cases {
			if got[i] != fmt.Sprint(c.want) {
				t.Errorf("%s: %s: verified %s, want %v", s.lang, c.what, got[i], c.want)
			}
		}
	}
}
