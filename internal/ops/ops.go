// Package ops serves a component's operational endpoints: /metrics
// (Prometheus), /healthz (the process is alive), /readyz (every
// dependency answers right now; 503 with the reasons when one does not) and
// /debug/pprof/ (Go's profiles and goroutine dumps, for diagnosing a live
// process; the ops address is loopback by default).
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckTimeout bounds one /readyz probe of all checks together.
const CheckTimeout = 2 * time.Second

// Check reports whether one dependency answers; nil means ready.
type Check func(ctx context.Context) error

// Server is the ops HTTP server of one component.
type Server struct {
	log *slog.Logger
	srv *http.Server
	ln  net.Listener

	mu     sync.Mutex
	checks map[string]Check
}

// New returns a server that will listen on addr and expose the metrics gathered by g.
func New(addr string, g prometheus.Gatherer, log *slog.Logger) *Server {
	s := &Server{log: log, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.srv = &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// AddCheck registers a readiness check under name (for example "kafka").
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Ready runs every check concurrently and returns the failures by name.
func (s *Server) Ready(ctx context.Context) map[string]error {
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := map[string]error{}
	for name, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c(ctx); err != nil {
				mu.Lock()
				failed[name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	failed := s.Ready(r.Context())
	if len(failed) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
		return
	}
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	reasons := map[string]string{}
	for _, n := range names {
		reasons[n] = failed[n].Error()
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": reasons})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// cmdline is pprof's /debug/pprof/cmdline with every flag value
// redacted: flags carry secrets (-endpoints.encryption-key,
// -clickhouse.password). The program, its subcommand and the flag names
// stay.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(RedactArgs(os.Args), "\x00"))
}

// RedactArgs returns args with every flag value replaced by [redacted]:
// "-name=value" keeps its name, a separate value is replaced whole; the
// program and a subcommand before the first flag stay.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	flags := false
	for i, a := range args {
		switch {
		case i == 0 || !flags && !strings.HasPrefix(a, "-"):
			out[i] = a
		case strings.HasPrefix(a, "-"):
			flags = true
			if name, _, ok := strings.Cut(a, "="); ok {
				out[i] = name + "=[redacted]"
			} else {
				out[i] = a
			}
		default:
			out[i] = "[redacted]"
		}
	}
	return out
}

// Start binds the listening socket and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("ops listener %s: %w", s.srv.Addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ops server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address (useful with port 0 in tests).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.srv.Addr
	}
	return s.ln.Addr().String()
}

// Stop shuts the server down, waiting for in-flight requests until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// one per component: no global registry is used anywhere.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
