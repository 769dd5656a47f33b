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

	// Scenarios is the comma-separated list to run, in order. Default "ceiling,ingest,e2e,e2e-steady,failures,history".
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
	// System is "start" (each scenario that needs the system starts a
	// private instance of ZaitsBinary and stops it afterwards) or "running"
	// (use the system at GatewayURL with Token and APIKey). Default "start".
	System string
	// ZaitsBinary is the binary "start" runs. Default ".state/bin/zaits" (make build).
	ZaitsBinary string
	// GatewayURL is the running system's public API. Default http://127.0.0.1:8080.
	GatewayURL string
	// Token is the running system's service token (ingestion, any account).
	Token flagenv.Secret
	// APIKey is the running system's API key of Account (management API).
	APIKey flagenv.Secret
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
	fs.StringVar(&c.Scenarios, "bench.scenarios", "ceiling,ingest,e2e,e2e-steady,failures,history", "comma-separated scenarios to run, in order")
	fs.StringVar(&c.ResultsDir, "bench.results-dir", "bench/results", "folder under which each run writes <timestamp>-<suite>/")
	fs.DurationVar(&c.Budget, "bench.budget", 9*time.Minute, "time budget of the whole suite; scenarios that do not fit are skipped")
	fs.DurationVar(&c.Warmup, "bench.warmup", 3*time.Second, "warm-up before every measured run (excluded from results)")
	fs.DurationVar(&c.Duration, "bench.duration", 15*time.Second, "measured window of every run")
	fs.StringVar(&c.System, "bench.system", "start", "start: every scenario starts a private zaits (own topics, database, ports, tokens); running: use the system at -bench.gateway-url")
	fs.StringVar(&c.ZaitsBinary, "bench.zaits-bin", ".state/bin/zaits", "the zaits binary -bench.system=start runs")
	fs.StringVar(&c.GatewayURL, "bench.gateway-url", "http://127.0.0.1:8080", "public API of the running system (-bench.system=running)")
	fs.Var(&c.Token, "bench.token", "service token of the running system (ingestion for any account)")
	fs.Var(&c.APIKey, "bench.api-key", "API key of -bench.account on the running system (management API)")
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
	if c.System != "start" && c.System != "running" {
		errs = append(errs, fmt.Errorf("bench.system: %q is neither start nor running", c.System))
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
