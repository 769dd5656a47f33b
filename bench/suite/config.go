package suite

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/zaits/webhooks/internal/broker"
	"github.com/zaits/webhooks/internal/flagenv"
)

// Config is what every scenario shares. RegisterFlags sets the documented
// defaults; Kafka is filled from the shared kafka.* flags.
type Config struct {
	Kafka *broker.Config

	// Scenarios is the comma-separated list to run, in order. Default "ceiling,ingest".
	Scenarios string
	// ResultsDir is where each run's folder is created. Default "bench/results".
	ResultsDir string
	// Budget bounds the whole suite; scenarios still to run when it is
	// spent are reported as skipped. Default 9m (make bench: at most 10 minutes).
	Budget time.Duration
	// Warmup precedes every measured run and is excluded. Default 3s.
	Warmup time.Duration
	// Duration is the measured window of every run. Default 15s.
	Duration time.Duration
	// GatewayURL is the system's public API. Default http://127.0.0.1:8080.
	GatewayURL string
	// Token is the Bearer credential for the API: a service token (ingest
	// for any account) or an account API key.
	Token flagenv.Secret
	// Account is the account id the bench's events belong to. Default "acct_bench".
	Account string
	// ClickHouseAddr is asked for its version for the environment block
	// (and used by the history scenario). Default 127.0.0.1:9000.
	ClickHouseAddr string
	// Progress draws live progress lines on stderr. Default true.
	Progress bool
}

// RegisterFlags registers the bench.* flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenarios, "bench.scenarios", "ceiling,ingest", "comma-separated scenarios to run, in order")
	fs.StringVar(&c.ResultsDir, "bench.results-dir", "bench/results", "folder under which each run writes <timestamp>-<suite>/")
	fs.DurationVar(&c.Budget, "bench.budget", 9*time.Minute, "time budget of the whole suite; scenarios that do not fit are skipped")
	fs.DurationVar(&c.Warmup, "bench.warmup", 3*time.Second, "warm-up before every measured run (excluded from results)")
	fs.DurationVar(&c.Duration, "bench.duration", 15*time.Second, "measured window of every run")
	fs.StringVar(&c.GatewayURL, "bench.gateway-url", "http://127.0.0.1:8080", "base URL of the system's public API")
	fs.Var(&c.Token, "bench.token", "Bearer token for the API (service token or account API key)")
	fs.StringVar(&c.Account, "bench.account", "acct_bench", "account id of the bench's events")
	fs.StringVar(&c.ClickHouseAddr, "bench.clickhouse-addr", "127.0.0.1:9000", "ClickHouse native address (version for the report; history scenario)")
	fs.BoolVar(&c.Progress, "bench.progress", true, "draw live progress lines on stderr")
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Kafka == nil {
		errs = append(errs, errors.New("bench: kafka configuration missing"))
	} else if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.ScenarioList()) == 0 {
		errs = append(errs, errors.New("bench.scenarios: at least one scenario is required"))
	}
	if c.ResultsDir == "" {
		errs = append(errs, errors.New("bench.results-dir: required"))
	}
	if c.Budget <= 0 || c.Duration <= 0 || c.Warmup < 0 {
		errs = append(errs, errors.New("bench.budget and bench.duration must be positive, bench.warmup not negative"))
	}
	if u, err := url.Parse(c.GatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("bench.gateway-url: %q is not an http(s) URL", c.GatewayURL))
	}
	if c.Account == "" {
		errs = append(errs, errors.New("bench.account: required"))
	}
	return errors.Join(errs...)
}

// ScenarioList is Scenarios split at commas, blanks dropped.
func (c *Config) ScenarioList() []string {
	var out []string
	for _, s := range strings.Split(c.Scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
