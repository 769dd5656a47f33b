package schemas

import "time"

// Job types.
const (
	JobRecover = "recover" // re-send an endpoint's failed deliveries accepted in a window
	JobReplay  = "replay"  // deliver an account's events of a window again (or for the first time) to an endpoint
	JobRedrive = "redrive" // re-deliver an endpoint's dead letters of a window
)

// Job statuses.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Job is one recovery job and its progress: the JSON value of a <p>.jobs
// message keyed by ID (compacted: a job's last record is its state). The
// gateway writes it queued; the router that owns the account's partition of
// <p>.events runs it and records its progress (Cursor, Counts) after the
// tasks before the cursor were acknowledged, so a new owner resumes there.
// A cancellation is a record keyed "cancel:<id>" (JobCancelKey), never
// written over by the runner's progress.
type Job struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	AccountID  string     `json:"account_id"`
	EndpointID string     `json:"endpoint_id"`
	Status     string     `json:"status"`
	Since      time.Time  `json:"since"`
	Until      *time.Time `json:"until"`
	// EventTypes narrow a replay (catalogue types or subscription
	// patterns); empty: the endpoint's subscriptions.
	EventTypes []string `json:"event_types"`
	// Rate bounds the tasks per second the job produces.
	Rate       int        `json:"rate"`
	Counts     JobCounts  `json:"counts"`
	Cursor     JobCursor  `json:"cursor"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// Error says why a job failed; also what it waits for while running
	// (for example the delivery log being unavailable).
	Error string `json:"error"`
}

// JobCounts is a job's progress.
type JobCounts struct {
	// Scanned counts the records (events, dead letters) or failed
	// deliveries read.
	Scanned int64 `json:"scanned"`
	// Matched counts those the job is to deliver.
	Matched int64 `json:"matched"`
	// Sent counts the tasks written to <p>.deliveries.
	Sent int64 `json:"sent"`
	// Skipped counts the matched ones that could not be sent (their event
	// deleted by retention, or not in the log).
	Skipped int64 `json:"skipped"`
}

// JobCursor is where a job continues.
type JobCursor struct {
	// Partition, Offset and End: a replay or redrive reads Partition from
	// Offset up to End (exclusive), fixed when the job starts (Bounded).
	Partition int   `json:"partition"`
	Offset    int64 `json:"offset"`
	End       int64 `json:"end"`
	Bounded   bool  `json:"bounded,omitempty"`
	// AcceptedAt, Offset and DeliveryID: a recover continues after this
	// delivery (its acceptance, its event's offset, its id).
	AcceptedAt *time.Time `json:"accepted_at,omitempty"`
	DeliveryID string     `json:"delivery_id,omitempty"`
}

// Finished reports whether the job ended.
func (j *Job) Finished() bool {
	return j.Status == JobCompleted || j.Status == JobFailed || j.Status == JobCancelled
}

// JobCancelKey is the <p>.jobs key of the cancellation of job id.
func JobCancelKey(id string) string { return "cancel:" + id }
