// Package suite runs benchmark scenarios against the system and writes a
// results folder per run: report.md, results.json and SVG charts.
//
// A scenario is a function from a shared Env (configuration, results
// folder, progress writer, the results of the scenarios before it) to a
// Result. The runner runs the selected scenarios in order within a time
// budget, records the environment, and writes the report even when a
// scenario fails or is skipped.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zaits/webhooks/bench/load"
	"github.com/zaits/webhooks/bench/receiver"
)

// Scenario is one benchmark.
type Scenario struct {
	// Name selects it in -bench.scenarios.
	Name string
	// About says in one sentence what it measures (report and -h).
	About string
	// Estimate is how long it runs with the given configuration; the runner
	// skips a scenario that does not fit in the remaining budget.
	Estimate func(cfg *Config) time.Duration
	// Run measures. It returns a Result even on failure when it measured
	// something; an error marks the scenario failed in the report.
	Run func(ctx context.Context, env *Env) (*Result, error)
}

// Env is what a scenario gets from the runner.
type Env struct {
	Config *Config
	// Scenario is the name of the running scenario.
	Scenario string
	// Dir is this suite run's results folder; a scenario may write extra files there.
	Dir string
	Log *slog.Logger
	// Progress receives live progress lines (nil: none).
	Progress io.Writer
	// Earlier holds the results of the scenarios that ran before this one,
	// e.g. e2e reads the ceiling's deliveries/s from it.
	Earlier []*Result
}

// Find returns the earlier result of the named scenario, or nil.
func (e *Env) Find(name string) *Result {
	for _, r := range e.Earlier {
		if r.Scenario == name {
			return r
		}
	}
	return nil
}

// Ceiling is the closed-loop deliveries/s of an earlier ceiling run, or 0.
func (e *Env) Ceiling() float64 { return ceilingOf(e.Earlier) }

func ceilingOf(results []*Result) float64 {
	for _, r := range results {
		if r.Scenario == "ceiling" {
			for _, m := range r.Runs {
				if m.Mode == "closed" {
					return m.UnitsPerSecond
				}
			}
		}
	}
	return 0
}

// Result is what a scenario measured.
type Result struct {
	Scenario string `json:"scenario"`
	About    string `json:"about"`
	// Status is "ok", "failed" or "skipped"; Reason says why when not ok.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Headline holds the few numbers a reader wants first.
	Headline []Metric `json:"headline"`
	// Runs are the load runs the scenario made (closed loop, open loop, …).
	Runs []*Measurement `json:"runs"`
	// Notes are sentences for the report: assumptions, caveats.
	Notes    []string      `json:"notes,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
}

// Metric is one named number.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Measurement is one load run of a scenario and what the receiver saw during it.
type Measurement struct {
	*load.Stats
	// Unit is what Stats.Units counts: "deliveries", "events".
	Unit string `json:"unit"`
	// Path says what was driven, e.g. "HTTP POST /v1/events".
	Path string `json:"path"`
	// UnitsPerSecond and OpsPerSecond over the measured window.
	UnitsPerSecond float64 `json:"units_per_second"`
	OpsPerSecond   float64 `json:"ops_per_second"`
	// Latency summarises Stats.Latency (per operation; open loop: from the intended start).
	Latency Latency `json:"latency"`
	// OfferedPerSecond is, for runs through the system, the deliveries/s the
	// system accepted for delivery (events accepted × endpoints), which the
	// delivered UnitsPerSecond is compared with.
	OfferedPerSecond float64 `json:"offered_per_second,omitempty"`
	// Receiver is the receiver's report for runs that deliver to it.
	Receiver *receiver.Report `json:"receiver,omitempty"`
	// ReceiverLatency summarises Receiver.Latency (accepted→receipt).
	ReceiverLatency *Latency `json:"receiver_latency,omitempty"`
	// CPU is each process's CPU time in the measured window, per 1,000
	// deliveries (runs that deliver).
	CPU *CPUReport `json:"cpu,omitempty"`
}

// NewMeasurement wraps load stats (and, for delivering runs, a receiver report).
func NewMeasurement(s *load.Stats, unit, path string, rep *receiver.Report) *Measurement {
	r := &Measurement{Stats: s, Unit: unit, Path: path, UnitsPerSecond: s.UnitsPerSecond(), OpsPerSecond: s.OpsPerSecond(), Latency: Summarize(s.Latency)}
	if rep != nil {
		r.Receiver = rep
		l := Summarize(rep.Latency)
		r.ReceiverLatency = &l
	}
	return r
}

// Skipped returns a result that says why the scenario did not run.
func Skipped(s Scenario, reason string) *Result {
	return &Result{Scenario: s.Name, About: s.About, Status: "skipped", Reason: reason}
}

// Select returns the scenarios named in cfg.Scenarios, in that order.
func Select(all []Scenario, cfg *Config) ([]Scenario, error) {
	byName := map[string]Scenario{}
	var names []string
	for _, s := range all {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	var out []Scenario
	var errs []error
	for _, n := range cfg.ScenarioList() {
		s, ok := byName[n]
		if !ok {
			errs = append(errs, fmt.Errorf("bench.scenarios: unknown scenario %q (known: %s)", n, strings.Join(names, ", ")))
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// Suite is one run of a list of scenarios.
type Suite struct {
	Name        string        `json:"suite"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Environment Environment   `json:"environment"`
	Results     []*Result     `json:"results"`
	// Dir is the results folder.
	Dir string `json:"-"`
}

// Run runs scenarios in order within cfg.Budget, then writes the results
// folder. It returns the suite even when a scenario failed; the error is
// only about the run itself (folder not writable).
// settings is the effective configuration for the environment block.
func Run(ctx context.Context, cfg *Config, scenarios []Scenario, settings map[string]string, log *slog.Logger) (*Suite, error) {
	start := time.Now().UTC()
	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	name := strings.Join(names, "+")
	if len(scenarios) > 2 {
		name = "suite"
	}
	su := &Suite{Name: name, Started: start}
	su.Dir = filepath.Join(cfg.ResultsDir, start.Format("20060102T150405Z")+"-"+name)
	if err := os.MkdirAll(su.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	su.Environment = Collect(ctx, cfg)
	su.Environment.Config = settings
	deadline := start.Add(cfg.Budget)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var progress io.Writer
	if cfg.Progress {
		progress = os.Stderr
	}
	for _, s := range scenarios {
		if est := s.Estimate(cfg); time.Now().Add(est).After(deadline) {
			su.Results = append(su.Results, Skipped(s, fmt.Sprintf("needs about %s, only %s of the %s budget left", est.Round(time.Second), time.Until(deadline).Round(time.Second), cfg.Budget)))
			continue
		}
		log.Info("scenario starting", "scenario", s.Name, "estimate", s.Estimate(cfg).Round(time.Second))
		env := &Env{Config: cfg, Scenario: s.Name, Dir: su.Dir, Log: log.With("scenario", s.Name), Progress: progress, Earlier: su.Results}
		t0 := time.Now()
		res, err := s.Run(ctx, env)
		if res == nil {
			res = &Result{}
		}
		res.Scenario, res.About, res.Started, res.Duration = s.Name, s.About, t0.UTC(), time.Since(t0)
		switch {
		case err != nil:
			res.Status, res.Reason = "failed", err.Error()
			log.Error("scenario failed", "scenario", s.Name, "err", err)
		case res.Status == "":
			res.Status = "ok"
		}
		su.Results = append(su.Results, res)
		log.Info("scenario done", "scenario", s.Name, "status", res.Status, "took", res.Duration.Round(time.Millisecond))
	}
	su.Duration = time.Since(start)
	if err := su.Write(); err != nil {
		return su, err
	}
	return su, nil
}
