// Package schemas holds the contracts between the components: topic names,
// Kafka message types, the event catalogue, the ClickHouse DDL, the JSON
// schemas and the OpenAPI document. Nothing here does I/O.
package schemas

// Topic names, without the configurable prefix. The full name is
// "<prefix>.<name>", for example "zaits.deliveries".
const (
	TopicEvents        = "events"         // key: account id; value: Event JSON
	TopicEventsInvalid = "events.invalid" // quarantine for messages that do not parse or validate
	TopicDeliveries    = "deliveries"     // key: endpoint id; value: Task JSON
	TopicRetry1m       = "retry.1m"       // key: endpoint id; first delay tier
	TopicRetry5m       = "retry.5m"
	TopicRetry30m      = "retry.30m"
	TopicRetry2h       = "retry.2h"
	TopicDead          = "dead"      // key: endpoint id; tasks that failed every attempt
	TopicAttempts      = "attempts"  // key: endpoint id; one record per attempt
	TopicEndpoints     = "endpoints" // compacted; key: endpoint id; tombstone = deleted
	TopicJobs          = "jobs"      // compacted; key: job id; value: Job JSON (recovery jobs and their progress)
)

// RetryTopics are the delay tiers in the order a failing task passes them.
var RetryTopics = []string{TopicRetry1m, TopicRetry5m, TopicRetry30m, TopicRetry2h}

// TopicSpec describes one topic to provision.
type TopicSpec struct {
	Name      string // without prefix
	Compacted bool   // cleanup.policy=compact
}

// AllTopics lists every topic the system uses, in data-flow order.
var AllTopics = []TopicSpec{
	{Name: TopicEvents},
	{Name: TopicEventsInvalid},
	{Name: TopicDeliveries},
	{Name: TopicRetry1m},
	{Name: TopicRetry5m},
	{Name: TopicRetry30m},
	{Name: TopicRetry2h},
	{Name: TopicDead},
	{Name: TopicAttempts},
	{Name: TopicEndpoints, Compacted: true},
	{Name: TopicJobs, Compacted: true},
}

// Topic returns the full topic name for prefix and name.
func Topic(prefix, name string) string { return prefix + "." + name }
