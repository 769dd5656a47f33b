package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/eventlog"
	"github.com/zaits/webhooks/internal/flagenv"
	"github.com/zaits/webhooks/internal/jobs"
	"github.com/zaits/webhooks/schemas"
)

const deadUsage = `usage: zaits dead list   (-endpoint <id> | -account <id>) [-since <RFC 3339>] [-until <RFC 3339>] [-limit <n>]
       zaits dead replay (-endpoint <id> | -account <id>) [-since <RFC 3339>] [-until <RFC 3339>] [-rate <n>] [-wait]

list prints the dead letters of <p>.dead (tasks whose every attempt failed) as
JSON lines, oldest first. replay creates a redrive job per endpoint (the
routers run it, as for POST …/dead-letters/replay) and, with -wait, waits
for the jobs to end and prints them.
`

// dead is the operators' dead-letter tool.
func dead(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] != "list" && args[0] != "replay" {
		fmt.Fprint(stderr, deadUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("zaits dead "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	logFormat := fs.String("log.format", "text", "log format: text or json")
	logLevel := fs.String("log.level", "warn", "log level: debug, info, warn or error")
	endpointID := fs.String("endpoint", "", "the endpoint whose dead letters to list or replay")
	account := fs.String("account", "", "every endpoint of this account")
	since := fs.String("since", "", "dead letters written at or after this RFC 3339 time (default: all kept)")
	until := fs.String("until", "", "dead letters written before this RFC 3339 time (default: now)")
	limit := fs.Int("limit", 1000, "list at most this many")
	rate := fs.Int("rate", 0, "tasks per second of each replay job (default: the router's -router.job-rate)")
	wait := fs.Bool("wait", false, "replay: wait until the jobs ended and print them")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long list or replay -wait may take")
	var kc broker.Config
	kc.RegisterFlags(fs)
	if err := flagenv.Parse(fs, "ZAITS", args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "zaits dead: %v\n", err)
		return 2
	}
	var from, to time.Time
	var bad []string
	if (*endpointID == "") == (*account == "") {
		bad = append(bad, "give exactly one of -endpoint or -account")
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", *since, &from}, {"until", *until, &to}} {
		if t.v == "" {
			continue
		}
		if *t.dst, err = time.Parse(time.RFC3339, t.v); err != nil {
			bad = append(bad, "-"+t.name+": must be an RFC 3339 time such as 2026-12-01T10:00:00Z")
		}
	}
	if *rate < 0 || *rate > 10000 {
		bad = append(bad, "-rate: must be 0..10000")
	}
	if err := kc.Validate(); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "zaits dead %s: %s\n\n%s", verb, strings.Join(bad, "; "), deadUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	kcd := broker.Defaulted(&kc)
	letters, err := scanDead(ctx, eventlog.Open(kcd, schemas.TopicDead), *endpointID, *account, from, to, *limit)
	if err != nil {
		log.Error("reading the dead letters", "err", err)
		return 1
	}
	if verb == "list" {
		enc := json.NewEncoder(stdout)
		for _, l := range letters {
			enc.Encode(l) //nolint:errcheck
		}
		fmt.Fprintf(stderr, "%d dead letters\n", len(letters))
		return 0
	}

	// replay: one redrive job per endpoint that has dead letters in the window.
	byEndpoint := map[string]string{} // endpoint → account
	for _, l := range letters {
		byEndpoint[l.EndpointID] = l.AccountID
	}
	if len(byEndpoint) == 0 {
		fmt.Fprintln(stderr, "no dead letters in the window: no job created")
		return 0
	}
	store := jobs.NewStore(kcd, log)
	if err := store.Start(ctx); err != nil {
		log.Error("job store", "err", err)
		return 1
	}
	defer store.Stop()
	now := time.Now().UTC().Truncate(time.Second)
	if from.IsZero() {
		from = now.Add(-kcd.Retention[schemas.TopicDead])
	}
	var ids []string
	for _, ep := range sortedKeys(byEndpoint) {
		j := schemas.Job{ID: jobs.NewID(), Type: schemas.JobRedrive, AccountID: byEndpoint[ep], EndpointID: ep, Status: schemas.JobQueued,
			Since: from, Rate: *rate, CreatedAt: now}
		if !to.IsZero() {
			u := to.UTC()
			j.Until = &u
		}
		if err := store.Put(ctx, j); err != nil {
			log.Error("creating a redrive job", "endpoint", ep, "err", err)
			return 1
		}
		ids = append(ids, j.ID)
		fmt.Fprintf(stderr, "redrive job %s for endpoint %s (account %s)\n", j.ID, ep, j.AccountID)
	}
	if !*wait {
		return 0
	}
	for {
		changed := store.Changed()
		done := 0
		for _, id := range ids {
			if j, ok := store.Get(id); ok && j.Finished() {
				done++
			}
		}
		if done == len(ids) {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			log.Error("the jobs did not end in time (they go on)", "timeout", *timeout)
			return 1
		}
	}
	enc := json.NewEncoder(stdout)
	code := 0
	for _, id := range ids {
		j, _ := store.Get(id)
		enc.Encode(j) //nolint:errcheck
		if j.Status != schemas.JobCompleted {
			code = 1
		}
	}
	return code
}

// deadLetter is one line of zaits dead list.
type deadLetter struct {
	EndpointID string    `json:"endpoint_id"`
	AccountID  string    `json:"account_id"`
	DeliveryID string    `json:"delivery_id"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	Attempts   int       `json:"attempts"`
	CreatedAt  time.Time `json:"created_at"`
	DeadAt     time.Time `json:"dead_at"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
}

// scanDead reads the dead letters of endpoint (its partition) or of
// account (every partition) written in [from, to), at most limit.
func scanDead(ctx context.Context, dead *eventlog.Log, endpoint, account string, from, to time.Time, limit int) ([]deadLetter, error) {
	parts := []int{dead.PartitionOf(endpoint)}
	if endpoint == "" {
		parts = dead.Partitions()
	}
	var out []deadLetter
	for _, p := range parts {
		start, err := dead.StartAt(ctx, p, from)
		if err != nil {
			return nil, err
		}
		_, err = dead.Scan(ctx, p, start, to, math.MaxInt, func(rec *eventlog.Record) bool {
			t, err := schemas.ParseTask(rec.Message(dead.Topic()))
			if err != nil || endpoint != "" && t.EndpointID != endpoint || account != "" && t.AccountID != account {
				return true
			}
			out = append(out, deadLetter{EndpointID: t.EndpointID, AccountID: t.AccountID, DeliveryID: t.DeliveryID, EventID: t.EventID,
				EventType: t.EventType, Attempts: t.HistoryAttempt(), CreatedAt: t.AcceptedAt.UTC(), DeadAt: rec.Time.UTC(),
				Partition: rec.Partition, Offset: rec.Offset})
			return len(out) < limit
		})
		if err != nil {
			return nil, err
		}
		if len(out) >= limit {
			break
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].DeadAt.Before(out[b].DeadAt) })
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
