package suite_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/suite"
	"github.com/zaits/webhooks/internal/broker"
)

func newConfig(t *testing.T) *suite.Config {
	kc := &broker.Config{}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	kc.RegisterFlags(fs)
	cfg := &suite.Config{Kafka: kc}
	cfg.RegisterFlags(fs)
	cfg.ResultsDir = t.TempDir()
	return cfg
}

func TestSelect(t *testing.T) {
	all := []suite.Scenario{{Name: "a"}, {Name: "b"}}
	cfg := newConfig(t)
	f := func(list string, want []string, wantErr bool) {
		t.Helper()
		cfg.Scenarios = list
		got, err := suite.Select(all, cfg)
		if (err != nil) != wantErr {
			t.Errorf("Select(%q) error %v, want error %v", list, err, wantErr)
		}
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("Select(%q) = %v, want %v", list, names, want)
		}
	}
	f("b, a", []string{"b", "a"}, false)
	f("a,nope", []string{"a"}, true)
}

func TestBudgetSkipsAndFailuresAreReported(t *testing.T) {
	cfg := newConfig(t)
	cfg.Budget = time.Minute
	var sawEarlier bool
	scenarios := []suite.Scenario{
		{Name: "first", Estimate: func(*suite.Config) time.Duration { return 0 },
			Run: func(context.Context, *suite.Env) (*suite.Result, error) {
				return &suite.Result{Headline: []suite.Metric{{Name: "speed", Value: 42, Unit: "x/s"}}}, nil
			}},
		{Name: "broken", Estimate: func(*suite.Config) time.Duration { return 0 },
			Run: func(_ context.Context, env *suite.Env) (*suite.Result, error) {
				sawEarlier = env.Find("first") != nil
				return nil, errors.New("it broke")
			}},
		{Name: "huge", Estimate: func(*suite.Config) time.Duration { return time.Hour },
			Run: func(context.Context, *suite.Env) (*suite.Result, error) {
				t.Error("a scenario longer than the budget must not run")
				return nil, nil
			}},
	}
	su, err := suite.Run(context.Background(), cfg, scenarios, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{su.Results[0].Status, su.Results[1].Status, su.Results[2].Status}
	if strings.Join(got, ",") != "ok,failed,skipped" {
		t.Errorf("statuses %v, want ok, failed, skipped", got)
	}
	if !sawEarlier {
		t.Error("a scenario must see the results of the ones before it")
	}
	report, err := os.ReadFile(filepath.Join(su.Dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| first | speed | 42 x/s |", "it broke", "needs about 1h0m0s"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q:\n%s", want, report)
		}
	}
}
