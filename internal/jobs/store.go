// Package jobs keeps the recovery jobs: every process that creates, shows
// or runs jobs materialises the compacted topic <p>.jobs in memory (a
// Store) and writes through it, so a job and its progress survive any
// process: a restarted or new owner reads where it stopped.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/endpoint"
	"github.com/zaits/webhooks/schemas"
)

// Store is the in-memory view of <p>.jobs plus the write path. Its mutex
// is a leaf (internal/locksordering.txt).
type Store struct {
	kafka  *broker.Config
	topic  string
	log    *slog.Logger
	writer *kafka.Writer
	follow *broker.Follower

	mu      sync.Mutex
	jobs    map[string]schemas.Job
	cancels map[string]bool
	waiters map[string]chan struct{} // revision → closed when applied
	changed chan struct{}            // closed (and replaced) on every change
}

// NewStore returns a store over <p>.jobs of kc; Start fills it.
func NewStore(kc *broker.Config, log *slog.Logger) *Store {
	kc = broker.Defaulted(kc)
	topic := kc.Topic(schemas.TopicJobs)
	return &Store{kafka: kc, topic: topic, log: log, writer: kc.NewWriter(topic, time.Millisecond),
		jobs: map[string]schemas.Job{}, cancels: map[string]bool{}, waiters: map[string]chan struct{}{}, changed: make(chan struct{})}
}

// Start reads the topic and returns once it caught up; it keeps following
// until Stop.
func (s *Store) Start(ctx context.Context) error {
	f, err := broker.Follow(ctx, s.kafka, s.topic, s.log, s.apply)
	if err != nil {
		return fmt.Errorf("job store: %w", err)
	}
	s.follow = f
	return nil
}

// Stop stops following and closes the writer.
func (s *Store) Stop() error {
	if s.follow != nil {
		s.follow.Stop()
	}
	return s.writer.Close()
}

func (s *Store) apply(m kafka.Message) {
	key := string(m.Key)
	rev := ""
	for _, h := range m.Headers {
		if h.Key == schemas.HeaderRevision {
			rev = string(h.Value)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch id, ok := strings.CutPrefix(key, "cancel:"); {
	case ok:
		s.cancels[id] = m.Value != nil
	case m.Value == nil:
		delete(s.jobs, key)
	default:
		var j schemas.Job
		if err := json.Unmarshal(m.Value, &j); err != nil || j.ID != key {
			s.log.Error("job store: undecodable record skipped", "key", key, "offset", m.Offset, "err", err)
		} else {
			s.jobs[key] = j
		}
	}
	if w := s.waiters[rev]; w != nil {
		close(w)
		delete(s.waiters, rev)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of any job.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Put writes job (acks=all) and returns once this store applied it.
func (s *Store) Put(ctx context.Context, job schemas.Job) error {
	v, err := json.Marshal(&job)
	if err != nil {
		return err
	}
	return s.write(ctx, job.ID, v)
}

// Cancel records that job id is to stop; its runner stops at its next
// checkpoint and marks it cancelled.
func (s *Store) Cancel(ctx context.Context, id string) error {
	return s.write(ctx, schemas.JobCancelKey(id), []byte("true"))
}

func (s *Store) write(ctx context.Context, key string, value []byte) error {
	rev := endpoint.RandomString(12)
	done := make(chan struct{})
	s.mu.Lock()
	s.waiters[rev] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, rev)
		s.mu.Unlock()
	}()
	m := kafka.Message{Key: []byte(key), Value: value, Headers: []kafka.Header{{Key: schemas.HeaderRevision, Value: []byte(rev)}}}
	if err := s.writer.WriteMessages(ctx, m); err != nil {
		return fmt.Errorf("write job %s: %w", key, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("job %s written but not yet visible: %w", key, ctx.Err())
	}
}

// Get returns the job with id.
func (s *Store) Get(id string) (schemas.Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	return j, ok
}

// Cancelled reports whether job id was asked to stop.
func (s *Store) Cancelled(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancels[id]
}

// List returns the account's endpoint's jobs, newest first.
func (s *Store) List(account, endpointID string) []schemas.Job {
	return s.matching(func(j *schemas.Job) bool { return j.AccountID == account && j.EndpointID == endpointID })
}

// Unfinished returns the jobs queued or running for which keep is true,
// oldest first.
func (s *Store) Unfinished(keep func(*schemas.Job) bool) []schemas.Job {
	out := s.matching(func(j *schemas.Job) bool { return !j.Finished() && keep(j) })
	sort.SliceStable(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
	return out
}

// matching returns the jobs keep accepts, newest first (then by id).
func (s *Store) matching(keep func(*schemas.Job) bool) []schemas.Job {
	s.mu.Lock()
	var out []schemas.Job
	for _, j := range s.jobs {
		if keep(&j) {
			out = append(out, j)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(a, b int) bool {
		if !out[a].CreatedAt.Equal(out[b].CreatedAt) {
			return out[a].CreatedAt.After(out[b].CreatedAt)
		}
		return out[a].ID > out[b].ID
	})
	return out
}

// NewID returns a fresh job id: "job_" and 20 random characters.
func NewID() string { return "job_" + endpoint.RandomString(20) }
