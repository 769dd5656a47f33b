package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the zaits_dispatcher_* series.
type metrics struct {
	attempts     *prometheus.CounterVec // outcome, error_code
	latency      prometheus.Histogram   // accepted → 2xx
	inFlight     prometheus.Gauge
	lanes        prometheus.Gauge
	buffered     prometheus.Gauge
	refills      prometheus.Counter
	refillReads  prometheus.Counter
	retryBacklog *prometheus.GaugeVec // tier
	lag          *prometheus.GaugeVec // topic
	badTasks     prometheus.Counter
	writeErrors  *prometheus.CounterVec // topic
	staleViews   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zaits_dispatcher_attempts_total", Help: "Delivery attempts by outcome (success, retrying, failed) and error code (empty on success).",
		}, []string{"outcome", "error_code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zaits_dispatcher_delivery_latency_seconds",
			Help:    "Time from the event's acceptance to the 2xx of its delivery.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 14400},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zaits_dispatcher_in_flight", Help: "HTTP delivery attempts in flight."}),
		lanes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zaits_dispatcher_active_lanes", Help: "Per-endpoint lanes with tasks, over the assigned partitions."}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zaits_dispatcher_buffered_tasks", Help: "Tasks read from Kafka and not yet finished."}),
		refills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_dispatcher_lane_refills_total", Help: "Readers opened by lanes to read their endpoint's skipped tasks again from Kafka (the lane's in-memory share was full)."}),
		refillReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_dispatcher_lane_refill_messages_total", Help: "Messages read again by lane refills, the lane's own and others' (the re-read cost of isolation; compare with attempts)."}),
		retryBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zaits_dispatcher_retry_backlog", Help: "Tasks waiting in each delay topic (high-water mark minus the group's committed offset).",
		}, []string{"tier"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zaits_dispatcher_consumer_lag", Help: "Messages not yet committed by the dispatcher group, per consumed topic.",
		}, []string{"topic"}),
		badTasks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_dispatcher_bad_tasks_total", Help: "Messages that are not delivery tasks (skipped)."}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zaits_dispatcher_write_errors_total", Help: "Failed produce batches (retried) by topic.",
		}, []string{"topic"}),
		staleViews: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zaits_dispatcher_stale_lookups_total", Help: "Attempts that read their endpoint before the dispatcher's view of <p>.endpoints had reached the position their task was routed with (it did not get there in 2 s, or was stuck since a wait that did not)."}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency, m.inFlight, m.lanes, m.buffered, m.refills, m.refillReads, m.retryBacklog, m.lag, m.badTasks, m.writeErrors, m.staleViews} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
