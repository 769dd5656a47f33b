package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Resuming a partition without delivering finished tasks again.
//
// The committed offset of a partition is its lowest unfinished task. While
// one endpoint lags (a slow or hanging endpoint's lane holds its oldest
// tasks, its later ones skipped), that offset stays far behind the other
// endpoints' progress, and whoever reads the partition next would deliver
// all of their tasks since then again. So every commit also records, in the
// commit's metadata, which of the tasks between the committed offset and
// the read position are unfinished: for each endpoint with unfinished tasks
// the lowest offset among them (an endpoint's tasks are attempted in offset
// order, so its unfinished ones are among those from there on). The next
// owner of the partition delivers a task below the recorded read position
// only if its endpoint is listed and its offset is at least the endpoint's
// lowest; every other task there was finished.
//
// The record is conservative: it may call a finished task unfinished (an
// endpoint's later task that finished before an earlier one's writes were
// acknowledged; a task read after the snapshot; the tasks above the read
// position a record cut short for size keeps) — delivered again, as
// before — but never the reverse. It fits in maxResumeMetadata bytes
// (Kafka's offset.metadata.max.bytes defaults to 4096). Without a record
// (another writer's commit, or an older version) the next owner delivers
// everything from the committed offset on, as at-least-once requires.

// maxResumeMetadata bounds the commit metadata.
const maxResumeMetadata = 3500

// resumeVersion starts every record this code writes.
const resumeVersion = "zaits-resume-1"

// resume is a previous owner's record of what was unfinished.
type resume struct {
	next int64            // the read position: tasks from here on are unfinished
	lows map[string]int64 // endpoint → its lowest unfinished offset below next
}

// finished reports whether the task at offset for endpoint was finished by
// the previous owner (and must not be delivered again).
func (r *resume) finished(offset int64, endpoint string) bool {
	if r == nil || offset >= r.next {
		return false
	}
	low, ok := r.lows[endpoint]
	return !ok || offset < low
}

// encodeResume writes the record as text: the version, the read position,
// then one "<lowest offset> <endpoint>" per line, lowest first. When not
// every endpoint fits in maxResumeMetadata bytes (or an id cannot be
// written safely), the record stops at that endpoint and its read position
// becomes that endpoint's lowest offset: everything from there on counts
// as unfinished. The endpoints that lag longest — the ones that hold the
// committed offset back — come first and are always kept.
func encodeResume(next int64, lows map[string]int64) string {
	eps := make([]string, 0, len(lows))
	for ep := range lows {
		eps = append(eps, ep)
	}
	sort.Slice(eps, func(i, j int) bool { return lows[eps[i]] < lows[eps[j]] })
	var body strings.Builder
	size := len(resumeVersion) + 1 + 20 // the header, with room for any read position
	for _, ep := range eps {
		line := "\n" + strconv.FormatInt(lows[ep], 10) + " " + ep
		if size+body.Len()+len(line) > maxResumeMetadata || strings.ContainsFunc(ep, func(r rune) bool { return r <= ' ' || r > '~' }) {
			next = lows[ep]
			break
		}
		body.WriteString(line)
	}
	return resumeVersion + "\n" + strconv.FormatInt(next, 10) + body.String()
}

// decodeResume reads a record written by encodeResume; nil when s is not
// one (empty, another writer's, or damaged).
func decodeResume(s string) *resume {
	lines := strings.Split(s, "\n")
	if len(lines) < 2 || lines[0] != resumeVersion {
		return nil
	}
	next, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || next < 0 {
		return nil
	}
	r := &resume{next: next, lows: make(map[string]int64, len(lines)-2)}
	for _, l := range lines[2:] {
		off, ep, ok := strings.Cut(l, " ")
		low, err := strconv.ParseInt(off, 10, 64)
		if !ok || err != nil || low < 0 || ep == "" {
			return nil
		}
		r.lows[ep] = low
	}
	return r
}

// fetchResume reads the group's committed offsets and their records for
// the assigned partitions. A partition is resumed from a record only when
// its committed offset is the one the generation assigned (the record
// belongs to that commit). Errors leave the partitions without records.
func (d *Dispatcher) fetchResume(ctx context.Context, gen *kafka.Generation) map[string]map[int]*resume {
	req := &kafka.OffsetFetchRequest{GroupID: gen.GroupID, Topics: map[string][]int{}}
	for topic, assigned := range gen.Assignments {
		for _, a := range assigned {
			req.Topics[topic] = append(req.Topics[topic], a.ID)
		}
	}
	out := map[string]map[int]*resume{}
	resp, err := d.kafka.OffsetFetch(ctx, req)
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		d.log.Warn("committed offsets' resume records not read; tasks after each committed offset are delivered again", "err", err)
		return out
	}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			r := decodeResume(p.Metadata)
			if p.Error != nil || r == nil {
				continue
			}
			for _, a := range gen.Assignments[topic] {
				if a.ID == p.Partition && a.Offset == p.CommittedOffset {
					if out[topic] == nil {
						out[topic] = map[int]*resume{}
					}
					out[topic][p.Partition] = r
				}
			}
		}
	}
	return out
}

// commit commits offsets (with their resume records) for gen.
func (d *Dispatcher) commit(ctx context.Context, gen *kafka.Generation, commits map[string][]kafka.OffsetCommit) error {
	resp, err := d.kafka.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: gen.GroupID, GenerationID: int(gen.ID), MemberID: gen.MemberID, Topics: commits,
	})
	if err != nil {
		return err
	}
	var errs []error
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}
