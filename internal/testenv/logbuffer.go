package testenv

import (
	"bytes"
	"context"
	"log/slog"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// LogBuffer is a log destination a test reads while the code under test
// writes to it (a slog handler's writer, a server's logger). Safe for
// concurrent use; the zero value is empty and ready.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Component is what a child process of a kill -9 test runs: a dispatcher,
// a router.
type Component interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// ServeUntilSIGTERM starts c, serves until SIGTERM and stops it within
// 10 s: the body of a test's child process. It returns the exit code (1 when
// c did not start or stop cleanly).
func ServeUntilSIGTERM(c Component, log *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Start(ctx); err != nil {
		log.Error("child start", "err", err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		return 1
	}
	return 0
}
