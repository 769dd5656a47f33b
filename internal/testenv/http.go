package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Post sends body as application/json to url with the bearer token (none
// when empty) and returns the status, the headers and the body.
func Post(t testing.TB, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Accept posts one event to the gateway at addr (POST /v1/events), fails
// the test unless it answers 202 accepted, and returns the event's id.
func Accept(t testing.TB, addr, token, event string) string {
	t.Helper()
	code, _, body := Post(t, "http://"+addr+"/v1/events", token, event)
	var v struct {
		Success bool
		Data    struct{ ID, Status string }
	}
	if err := json.Unmarshal([]byte(body), &v); code != 202 || err != nil || !v.Success || v.Data.Status != "accepted" || v.Data.ID == "" {
		t.Fatalf("POST /v1/events = %d %s", code, body)
	}
	return v.Data.ID
}

// Scrape returns the text of the /metrics of an ops server at addr.
func Scrape(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
