package router

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the zaits_router_* series.
type metrics struct {
	events      *prometheus.CounterVec // source: http (the gateway wrote it) or kafka (a producer did)
	tasks       prometheus.Counter
	perEvent    prometheus.Histogram
	duplicates  prometheus.Counter
	quarantined *prometheus.CounterVec // reason
	lag         *prometheus.GaugeVec   // partition
	window      *prometheus.GaugeVec   // partition
	retries     prometheus.Counter
	commitErrs  prometheus.Counter
	jobs        *prometheus.CounterVec // type, status
	jobTasks    *prometheus.CounterVec // type
	stale       prometheus.Counter
	viewWait    prometheus.Histogram

	fromHTTP, fromKafka prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_router_events_total",
			Help: "Events routed (after dropping duplicates), with or without subscribers, by source: http (accepted by a gateway) or kafka (written to <p>.events by a producer)."}, []string{"source"}),
		tasks: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_router_tasks_total",
			Help: "Delivery tasks written to <p>.deliveries and acknowledged."}),
		perEvent: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zaits_router_tasks_per_event",
			Help: "Delivery tasks per routed event (subscribed active endpoints).", Buckets: []float64{0, 1, 2, 3, 5, 8, 13, 21, 50, 100}}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_router_duplicates_total",
			Help: "Events dropped because their (account, id) was routed within the idempotency window."}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_router_quarantined_total",
			Help: "Messages of <p>.events moved to <p>.events.invalid, by reason."}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zaits_router_lag",
			Help: "Messages of <p>.events not yet routed (high-water mark minus next offset), per assigned partition."}, []string{"partition"}),
		window: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zaits_router_dedup_window_seconds",
			Help: "Span of the idempotency window in force per assigned partition (below the configured window when the id bound is reached)."}, []string{"partition"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_router_write_retries_total",
			Help: "Task writes retried after Kafka refused or timed out (the batch is retried, never skipped)."}),
		commitErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_router_commit_errors_total",
			Help: "Offset commits that failed (retried at the next interval)."}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_router_jobs_finished_total",
			Help: "Recovery jobs this router finished, by type (recover, replay, redrive) and status (completed, failed, cancelled)."}, []string{"type", "status"}),
		jobTasks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zaits_router_job_tasks_total",
			Help: "Delivery tasks written by recovery jobs, by type."}, []string{"type"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{Name: "zaits_router_stale_routes_total",
			Help: "Events routed before the endpoint view was known to have reached <p>.endpoints' end offset read after they were fetched (the -router.endpoints-wait bound passed): an endpoint change answered just before them may not apply to them."}),
		viewWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zaits_router_endpoints_wait_seconds",
			Help:    "Per fetched batch of events, how long its routing waited to make sure the endpoint view is current: for <p>.endpoints' end offsets read after the fetch (a lookup that runs while the previous batch is written), then for the view to apply them.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.tasks, m.perEvent, m.duplicates, m.quarantined, m.lag, m.window, m.retries, m.commitErrs, m.jobs, m.jobTasks, m.stale, m.viewWait)
	}
	m.fromHTTP, m.fromKafka = m.events.WithLabelValues("http"), m.events.WithLabelValues("kafka")
	return m
}
