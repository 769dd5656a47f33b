package chaos

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// readyz polls each component's /readyz every 250 ms and records when the
// answer changes (status and body), so a run can say what a load balancer
// would have seen during the failure.
type readyz struct {
	mu      sync.Mutex
	changes map[string][]ReadyChange // component → changes, in time order
}

// ReadyChange is one change of a component's /readyz answer.
type ReadyChange struct {
	At     time.Time `json:"at"`
	Status int       `json:"status"` // 0: no answer
	Body   string    `json:"body,omitempty"`
}

func newReadyz() *readyz { return &readyz{changes: map[string][]ReadyChange{}} }

// watch polls addr (host:port of the ops server) as component name until ctx ends.
func (r *readyz) watch(ctx context.Context, name, addr string) {
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		status, body := 0, ""
		resp, err := c.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			status, body = resp.StatusCode, strings.TrimSpace(string(b))
		} else {
			body = err.Error()
		}
		if status == http.StatusOK {
			body = "" // the body of a ready component says nothing more
		}
		r.mu.Lock()
		ch := r.changes[name]
		if len(ch) == 0 || ch[len(ch)-1].Status != status || ch[len(ch)-1].Body != body {
			r.changes[name] = append(ch, ReadyChange{At: time.Now(), Status: status, Body: body})
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *readyz) snapshot() map[string][]ReadyChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]ReadyChange, len(r.changes))
	for k, v := range r.changes {
		out[k] = append([]ReadyChange(nil), v...)
	}
	return out
}
