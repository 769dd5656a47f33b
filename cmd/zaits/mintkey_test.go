package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestMintKey(t *testing.T) {
	f := func(args []string, wantCode int, wantFlag, wantOwner string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := mintKey(args, &out, &errOut); code != wantCode {
			t.Fatalf("mint-key %v = %d, want %d: %s", args, code, wantCode, errOut.String())
		}
		if wantCode != 0 {
			return
		}
		key := regexp.MustCompile(`(?m)^  (z(?:k|st)_\S+)$`).FindStringSubmatch(out.String())
		entry := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(wantFlag) + `=(\S+)$`).FindStringSubmatch(out.String())
		if key == nil || entry == nil {
			t.Fatalf("output:\n%s", out.String())
		}
		sum := sha256.Sum256([]byte(key[1]))
		if entry[1] != wantOwner+":"+hex.EncodeToString(sum[:]) || strings.Contains(entry[1], key[1]) {
			t.Fatalf("entry %s does not hold the SHA-256 of key %s", entry[1], key[1])
		}
	}
	f([]string{"-account", "acct_42"}, 0, "gateway.api-keys", "acct_42")
	f([]string{"-service", "billing"}, 0, "gateway.service-tokens", "billing")
	f(nil, 2, "", "")
	f([]string{"-account", "a", "-service", "b"}, 2, "", "")
	f([]string{"-account", "bad id"}, 2, "", "")
}
