package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		case "/hang":
			<-release
		}
	}))
	defer srv.Close()
	defer close(release) // before srv.Close: the hanging handler must return
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	f := func(args []string, wantCode int, wantErr string) {
		t.Helper()
		var errOut bytes.Buffer
		began := time.Now()
		code := probe(args, &errOut)
		if code != wantCode || !strings.Contains(errOut.String(), wantErr) {
			t.Fatalf("probe %v = %d %q, want %d with %q", args, code, errOut.String(), wantCode, wantErr)
		}
		if took := time.Since(began); took > 3*time.Second {
			t.Fatalf("probe %v took %s", args, took)
		}
	}
	f([]string{srv.URL + "/healthz"}, 0, "")
	f([]string{srv.URL + "/readyz"}, 1, "503 Service Unavailable")
	f([]string{srv.URL + "/moved"}, 1, "302 Found")
	f([]string{"-timeout=200ms", srv.URL + "/hang"}, 1, "Timeout")
	f([]string{closed}, 1, "connection refused")
	f(nil, 2, "usage")
	f([]string{srv.URL, srv.URL}, 2, "usage")
	f([]string{"-timeout=0s", srv.URL}, 2, "usage")
}
