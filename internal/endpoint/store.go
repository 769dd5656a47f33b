// Package endpoint keeps the webhook endpoints: every process materialises
// the compacted topic <p>.endpoints in memory (a Store), and writes go
// through the same topic, so all instances converge on the same state and a
// restarted process restores it.
//
// Ordering of concurrent writers. Every accepted change raises the
// endpoint's Version by one. Readers apply records in log order with one
// deterministic rule, so every instance reaches the same decision:
//
//   - a tombstone deletes the endpoint and remembers the id as deleted,
//     unless it carries an expected version (schemas.HeaderIfVersion) and
//     the endpoint has another one: then it lost a race and is rejected;
//   - a record for an id never seen is accepted (after compaction the first
//     record of a key may carry any version);
//   - a record for a deleted id is rejected (no resurrection);
//   - a record with Version == current+1 is accepted;
//   - a record with the current revision is a repair copy and changes nothing;
//   - anything else lost a race and is rejected.
//
// A writer waits until its own view applied its record (read-your-writes)
// and learns whether it was accepted. A rejected writer gets ErrConflict
// (the API answers 409) and re-publishes the winning state as a repair copy,
// so that after compaction the last record of the key is the winner's.
//
// Positions. The store exposes how far its view has read (Applied, per
// partition the offset after the last record), the topic's end offsets as
// read after a call (Latest, one ListOffsets shared by concurrent callers)
// and a wait for the view to reach a position (WaitApplied, woken by each
// applied record). A write's answer implies its record lies before the end
// offsets any later Latest returns, so WaitApplied(Latest()) makes a view
// show every write answered before, by any instance: the router's causal
// routing.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/retry"
	"github.com/zaits/webhooks/schemas"
)

// Errors returned by the write methods.
var (
	ErrNotFound = errors.New("endpoint not found")
	ErrConflict = errors.New("endpoint was changed concurrently")
	// ErrRotationInProgress refuses a rotation while the secret replaced by
	// the previous one still signs: an endpoint has at most two live
	// secrets, so a delivery is signed at most twice.
	ErrRotationInProgress = errors.New("the previous secret is still in its rotation overlap")
	// ErrNotVisible: the write was acknowledged by Kafka (it is durable and
	// will take effect) but this store had not read it back when the
	// context ended. Retrying a create after it makes a second endpoint.
	ErrNotVisible = errors.New("written but not yet visible")
)

// Entry is one endpoint as the store holds it: the stored record plus its
// decrypted secrets. Entries are immutable; a change replaces the entry.
type Entry struct {
	schemas.Endpoint
	revision string   // of the record that produced this entry
	secrets  []secret // newest first
	options           // decrypted headers, compiled filter (options.go)
}

type secret struct {
	key     []byte
	expires time.Time // zero: current secret
}

// SigningSecrets returns the secrets that sign at time now: the current one
// first, then a replaced one while its rotation overlap lasts.
func (e *Entry) SigningSecrets(now time.Time) [][]byte {
	out := make([][]byte, 0, len(e.secrets))
	for _, s := range e.secrets {
		if s.expires.IsZero() || now.Before(s.expires) {
			out = append(out, s.key)
		}
	}
	return out
}

// Subscribed reports whether the entry is active and subscribed to eventType.
func (e *Entry) Subscribed(eventType string) bool {
	if !e.Active {
		return false
	}
	for _, sub := range e.Events {
		if schemas.Matches(sub, eventType) {
			return true
		}
	}
	return false
}

// account holds one account's endpoints and a cache of the derived lists,
// built lazily and dropped on every change of the account's endpoints.
type account struct {
	byID  map[string]*Entry
	cache atomic.Pointer[accountCache]
}

type accountCache struct {
	sorted []*Entry // List order; shared, never modified

	mu   sync.Mutex
	subs map[string][]*Entry // event type → active subscribed endpoints, id order
}

// Store is the in-memory view of <p>.endpoints plus the write path.
// Locks: mu (read) may be held while taking an accountCache's mu, never the
// reverse; mu is never held while calling Kafka or waiting on a channel
// (internal/locksordering.txt).
type Store struct {
	cfg    Config
	kafka  *broker.Config
	topic  string
	cipher *Cipher
	log    *slog.Logger
	writer *kafka.Writer
	events *kafka.Writer // webhook.endpoint.disabled events (Disable)
	client *kafka.Client // end offsets (Latest)

	progress progress // applied position, set up by Start
	latest   latest

	mu        sync.RWMutex
	byID      map[string]*Entry
	byAccount map[string]*account
	deleted   map[string]bool
	waiters   map[string]chan error // revision → nil (accepted) or ErrConflict

	cancel context.CancelFunc
	wg     sync.WaitGroup

	applied   prometheus.Counter
	rejected  prometheus.Counter
	disabled  *prometheus.CounterVec
	endpoints prometheus.GaugeFunc
}

// NewStore returns a store over <prefix>.endpoints; Start fills it.
func NewStore(cfg Config, kc *broker.Config, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	cfg = cfg.withDefaults()
	c, err := NewCipher(string(cfg.EncryptionKey), cfg.Dev)
	if err != nil {
		return nil, err
	}
	topic := kc.Topic(schemas.TopicEndpoints)
	s := &Store{
		cfg: cfg, kafka: kc, topic: topic, cipher: c, log: log,
		writer:    kc.NewWriter(topic, time.Millisecond),
		events:    kc.NewWriter(kc.Topic(schemas.TopicEvents), time.Millisecond),
		client:    kc.Client(),
		byID:      map[string]*Entry{},
		byAccount: map[string]*account{},
		deleted:   map[string]bool{},
		waiters:   map[string]chan error{},
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_endpoints_records_applied_total", Help: "Records of the endpoints topic applied to the in-memory view."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_endpoints_records_rejected_total", Help: "Records of the endpoints topic rejected as losers of a concurrent write."}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zaits_endpoints_disabled_total", Help: "Endpoints this process disabled, by reason (gone: a 410 answer; failing: every attempt failed for the configured period)."}, []string{"reason"}),
	}
	s.endpoints = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "zaits_endpoints", Help: "Endpoints in the in-memory view."}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.byID))
	})
	if reg != nil {
		reg.MustRegister(s.applied, s.rejected, s.disabled, s.endpoints)
	}
	return s, nil
}

// Start reads the topic from the beginning and returns once the view has
// caught up with the high-water mark of every partition it saw at start.
// It keeps following the topic until Stop.
func (s *Store) Start(ctx context.Context) error {
	first, last, err := broker.Offsets(ctx, s.kafka.Client(), s.topic)
	if err != nil {
		return fmt.Errorf("endpoint store: %w", err)
	}
	s.progress.applied = make([]atomic.Int64, len(last))
	for p := range s.progress.applied {
		s.progress.applied[p].Store(first[p]) // nothing before the first offset is left to read
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	caughtUp := make(chan int, len(last))
	for p, hwm := range last {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: s.kafka.BrokerList(), Topic: s.topic, Partition: p,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
			Dialer: &kafka.Dialer{Timeout: s.kafka.DialTimeout},
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			cancel()
			return err
		}
		if hwm <= first[p] {
			caughtUp <- p
		}
		s.wg.Add(1)
		go s.follow(rctx, r, p, hwm, caughtUp)
	}
	for range last {
		select {
		case <-caughtUp:
		case <-ctx.Done():
			return fmt.Errorf("endpoint store: catching up with %s: %w", s.topic, ctx.Err())
		}
	}
	s.mu.RLock()
	n := len(s.byID)
	s.mu.RUnlock()
	s.log.Info("endpoint store caught up", "topic", s.topic, "endpoints", n)
	return nil
}

func (s *Store) follow(ctx context.Context, r *kafka.Reader, partition int, hwm int64, caughtUp chan<- int) {
	defer s.wg.Done()
	defer r.Close()
	signalled := false
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("endpoint store: fetch failed, retrying", "partition", partition, "err", err)
			if !retry.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		s.apply(m)
		if !signalled && m.Offset+1 >= hwm {
			signalled = true
			caughtUp <- partition
		}
	}
}

func revisionOf(m kafka.Message) string { return header(m, schemas.HeaderRevision) }

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// apply is the one rule every reader follows (see the package comment).
func (s *Store) apply(m kafka.Message) {
	id := string(m.Key)
	rev := revisionOf(m)
	var verdict error
	defer func() {
		if verdict == nil {
			s.applied.Inc()
		} else {
			s.rejected.Inc()
		}
		// The position moves before the writer hears its verdict: a
		// write's answer implies Applied covers it.
		s.progress.advance(m.Partition, m.Offset+1)
		s.mu.Lock()
		w := s.waiters[rev]
		delete(s.waiters, rev)
		s.mu.Unlock()
		if w != nil {
			w <- verdict
		}
	}()

	if m.Value == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		old := s.byID[id]
		if want := header(m, schemas.HeaderIfVersion); want != "" && old != nil && want != strconv.FormatInt(old.Version, 10) {
			verdict = ErrConflict
			return
		}
		if old != nil {
			s.remove(old)
		}
		s.deleted[id] = true
		return
	}
	var ep schemas.Endpoint
	if err := json.Unmarshal(m.Value, &ep); err != nil || ep.ID != id {
		s.log.Error("endpoint store: undecodable record skipped", "key", id, "offset", m.Offset, "err", err)
		verdict = ErrConflict
		return
	}
	e := &Entry{Endpoint: ep, revision: rev}
	for _, sec := range ep.Secrets {
		key, err := s.cipher.Open(id, sec.Ciphertext)
		if err != nil {
			s.log.Error("endpoint store: secret not decryptable; the endpoint cannot sign", "endpoint", id, "err", err)
			continue
		}
		var exp time.Time
		if sec.ExpiresAt != nil {
			exp = *sec.ExpiresAt
		}
		e.secrets = append(e.secrets, secret{key: key, expires: exp})
	}
	e.options = s.openOptions(&ep)

	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.byID[id]
	switch {
	case s.deleted[id]:
		verdict = ErrConflict
	case cur == nil, ep.Version == cur.Version+1:
		if cur != nil {
			s.remove(cur)
		}
		s.byID[id] = e
		acc := s.byAccount[ep.AccountID]
		if acc == nil {
			acc = &account{byID: map[string]*Entry{}}
			s.byAccount[ep.AccountID] = acc
		}
		acc.byID[id] = e
		acc.cache.Store(nil)
	case rev != "" && rev == cur.revision:
		// A repair copy of the current state.
	default:
		verdict = ErrConflict
	}
}

// remove drops e from the indexes; mu must be held.
func (s *Store) remove(e *Entry) {
	delete(s.byID, e.ID)
	if acc := s.byAccount[e.AccountID]; acc != nil {
		delete(acc.byID, e.ID)
		acc.cache.Store(nil)
		if len(acc.byID) == 0 {
			delete(s.byAccount, e.AccountID)
		}
	}
}

// Stop stops following the topic and closes the writer.
func (s *Store) Stop() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if t, ok := s.client.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return errors.Join(s.writer.Close(), s.events.Close())
}

// Get returns the endpoint with id, of any account.
func (s *Store) Get(id string) (*Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.byID[id]
	return e, ok
}

// GetForAccount returns the endpoint only if it belongs to account.
func (s *Store) GetForAccount(account, id string) (*Entry, bool) {
	e, ok := s.Get(id)
	if !ok || e.AccountID != account {
		return nil, false
	}
	return e, true
}

// List returns the account's endpoints, oldest first (then by id). The
// slice is shared with other callers: do not modify it.
func (s *Store) List(account string) []*Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.cacheOf(account); c != nil {
		return c.sorted
	}
	return nil
}

// Subscribed appends to dst the account's active endpoints subscribed to
// eventType, in id order (deterministic fan-out order).
func (s *Store) Subscribed(dst []*Entry, account, eventType string) []*Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.cacheOf(account)
	if c == nil {
		return dst
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	subs, ok := c.subs[eventType]
	if !ok {
		for _, e := range c.sorted {
			if e.Subscribed(eventType) {
				subs = append(subs, e)
			}
		}
		sort.Slice(subs, func(i, j int) bool { return subs[i].ID < subs[j].ID })
		c.subs[eventType] = subs
	}
	return append(dst, subs...)
}

// cacheOf returns the account's derived lists, building them if a change
// dropped them; mu must be held for reading. No change can happen while it
// is held, so a cache built here is never stale; concurrent readers may
// build it twice, which is harmless.
func (s *Store) cacheOf(account string) *accountCache {
	acc := s.byAccount[account]
	if acc == nil {
		return nil
	}
	if c := acc.cache.Load(); c != nil {
		return c
	}
	c := &accountCache{sorted: make([]*Entry, 0, len(acc.byID)), subs: map[string][]*Entry{}}
	for _, e := range acc.byID {
		c.sorted = append(c.sorted, e)
	}
	sort.Slice(c.sorted, func(i, j int) bool {
		a, b := c.sorted[i], c.sorted[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.ID < b.ID
	})
	acc.cache.CompareAndSwap(nil, c)
	return acc.cache.Load()
}

// Create stores a new endpoint for ep.AccountID with a fresh id and secret;
// it returns the entry and the secret in clear (shown to the client once).
// ep's URL, Events, Description, Active, Ordering, Filter and RateLimit are
// taken as given; headers are its static headers in clear, sealed for the
// new id.
func (s *Store) Create(ctx context.Context, ep schemas.Endpoint, headers ...Header) (*Entry, string, error) {
	now := time.Now().UTC().Truncate(time.Second)
	ep.ID = NewID()
	ep.Headers = s.SealHeaders(ep.ID, headers)
	ep.Version = 1
	ep.CreatedAt, ep.UpdatedAt = now, now
	if ep.Ordering == "" {
		ep.Ordering = schemas.OrderingDefault
	}
	plain := NewSecret()
	ep.Secrets = []schemas.Secret{{Ciphertext: s.cipher.Seal(ep.ID, []byte(plain))}}
	if err := s.write(ctx, ep.ID, &ep); err != nil {
		return nil, "", err
	}
	e, ok := s.Get(ep.ID)
	if !ok {
		return nil, "", fmt.Errorf("endpoint %s not visible after its write was accepted", ep.ID)
	}
	return e, plain, nil
}

// Update applies change to the account's endpoint id and stores the result
// as the next version. If expectedVersion is not 0 and differs from the
// current version, nothing is written and ErrConflict is returned.
func (s *Store) Update(ctx context.Context, account, id string, expectedVersion int64, change func(*schemas.Endpoint) error) (*Entry, error) {
	cur, ok := s.GetForAccount(account, id)
	if !ok {
		return nil, ErrNotFound
	}
	if expectedVersion != 0 && expectedVersion != cur.Version {
		return nil, fmt.Errorf("%w: version is %d, not %d", ErrConflict, cur.Version, expectedVersion)
	}
	next := cur.Endpoint
	next.Events = append([]string(nil), cur.Events...)
	next.Secrets = append([]schemas.Secret(nil), cur.Secrets...)
	next.Headers = append([]schemas.EndpointHeader(nil), cur.Headers...)
	if err := change(&next); err != nil {
		return nil, err
	}
	next.ID, next.AccountID, next.CreatedAt = cur.ID, cur.AccountID, cur.CreatedAt
	next.Version = cur.Version + 1
	next.UpdatedAt = time.Now().UTC().Truncate(time.Second)
	if !next.UpdatedAt.After(cur.UpdatedAt) {
		next.UpdatedAt = cur.UpdatedAt.Add(time.Second)
	}
	if err := s.write(ctx, id, &next); err != nil {
		return nil, err
	}
	e, _ := s.Get(id)
	return e, nil
}

// Rotate gives the endpoint a new secret, returned in clear once; the
// previous current secret keeps signing for the configured overlap, and
// secrets whose overlap has ended are dropped. While a replaced secret is
// still in its overlap, Rotate refuses with ErrRotationInProgress (retire
// it first: RetirePrevious).
func (s *Store) Rotate(ctx context.Context, account, id string) (*Entry, string, error) {
	plain := NewSecret()
	now := time.Now().UTC()
	exp := now.Add(s.cfg.RotationOverlap)
	e, err := s.Update(ctx, account, id, 0, func(ep *schemas.Endpoint) error {
		kept := []schemas.Secret{{Ciphertext: s.cipher.Seal(id, []byte(plain))}}
		for _, old := range ep.Secrets {
			switch {
			case old.ExpiresAt != nil && now.Before(*old.ExpiresAt):
				return fmt.Errorf("%w until %s", ErrRotationInProgress, old.ExpiresAt.UTC().Format(time.RFC3339))
			case old.ExpiresAt == nil && s.cfg.RotationOverlap > 0:
				old.ExpiresAt = &exp
				kept = append(kept, old)
			}
		}
		ep.Secrets = kept
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return e, plain, nil
}

// RetirePrevious ends a rotation's overlap at once: the replaced secret
// stops signing, and X-Zaits-Signature carries the current secret's
// signature from the next delivery on. Without a replaced secret in its
// overlap it changes nothing.
func (s *Store) RetirePrevious(ctx context.Context, account, id string) (*Entry, error) {
	cur, ok := s.GetForAccount(account, id)
	if !ok {
		return nil, ErrNotFound
	}
	if len(cur.SigningSecrets(time.Now())) < 2 {
		return cur, nil
	}
	return s.Update(ctx, account, id, 0, func(ep *schemas.Endpoint) error {
		var kept []schemas.Secret
		for _, sec := range ep.Secrets {
			if sec.ExpiresAt == nil {
				kept = append(kept, sec)
			}
		}
		ep.Secrets = kept
		return nil
	})
}

// Delete writes a tombstone for the account's endpoint id. If
// expectedVersion is not 0, the endpoint is deleted only while it has that
// version; otherwise nothing changes and ErrConflict is returned (also when
// a concurrent change wins the race in the log).
func (s *Store) Delete(ctx context.Context, account, id string, expectedVersion int64) error {
	cur, ok := s.GetForAccount(account, id)
	if !ok {
		return ErrNotFound
	}
	if expectedVersion != 0 && expectedVersion != cur.Version {
		return fmt.Errorf("%w: version is %d, not %d", ErrConflict, cur.Version, expectedVersion)
	}
	var hs []kafka.Header
	if expectedVersion != 0 {
		hs = []kafka.Header{{Key: schemas.HeaderIfVersion, Value: strconv.AppendInt(nil, expectedVersion, 10)}}
	}
	return s.write(ctx, id, nil, hs...)
}

// write publishes ep (nil: a tombstone) with acks=all and waits until this
// process's view applied it. A rejected record gets a repair copy of the
// winning state and ErrConflict.
func (s *Store) write(ctx context.Context, id string, ep *schemas.Endpoint, headers ...kafka.Header) error {
	rev := RandomString(12)
	m := kafka.Message{Key: []byte(id), Headers: append([]kafka.Header{{Key: schemas.HeaderRevision, Value: []byte(rev)}}, headers...)}
	if ep != nil {
		b, err := json.Marshal(ep)
		if err != nil {
			return err
		}
		m.Value = b
	}
	done := make(chan error, 1)
	s.mu.Lock()
	s.waiters[rev] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, rev)
		s.mu.Unlock()
	}()
	if err := s.writer.WriteMessages(ctx, m); err != nil {
		return fmt.Errorf("write endpoint %s: %w", id, err)
	}
	select {
	case verdict := <-done:
		if errors.Is(verdict, ErrConflict) {
			s.repair(ctx, id)
		}
		return verdict
	case <-ctx.Done():
		return fmt.Errorf("endpoint %s %w: %w", id, ErrNotVisible, ctx.Err())
	}
}

// repair re-publishes the current state of id so that it is the last record
// of its key, which is what compaction keeps.
func (s *Store) repair(ctx context.Context, id string) {
	s.mu.RLock()
	cur, deleted := s.byID[id], s.deleted[id]
	s.mu.RUnlock()
	m := kafka.Message{Key: []byte(id)}
	switch {
	case cur != nil:
		// The winner's own revision marks the copy as a repair for every reader.
		m.Headers = []kafka.Header{{Key: schemas.HeaderRevision, Value: []byte(cur.revision)}}
		b, err := json.Marshal(&cur.Endpoint)
		if err != nil {
			return
		}
		m.Value = b
	case !deleted:
		return
	}
	if err := s.writer.WriteMessages(ctx, m); err != nil {
		s.log.Warn("endpoint store: repair copy not written", "endpoint", id, "err", err)
	}
}
