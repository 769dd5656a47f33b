package suite

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/zaits/webhooks/bench/system"
)

// Target is the system a scenario measures: a private instance it started
// or the running system the flags point at.
type Target struct {
	GatewayURL string
	// ServiceToken publishes events for any account; APIKey manages Account's endpoints.
	ServiceToken, APIKey, Account string
	// TopicPrefix is the system's Kafka topic prefix.
	TopicPrefix string
	// Database is the started system's ClickHouse database (empty for a running one).
	Database string
	// Started says the bench started this instance; Args are its flags.
	Started bool
	Args    []string
	// Pid is the started instance's process (0 for a running one: its CPU
	// is read from the zaits process listening on GatewayURL's port).
	Pid int
}

// System returns the system to measure and a function that releases it.
// With -bench.system=start it starts a private instance with flags added
// to the defaults (e.g. a retry schedule in seconds); with running, flags
// cannot be applied and the flags' gateway, tokens and prefix are returned.
func (e *Env) System(ctx context.Context, flags ...string) (*Target, func(), error) {
	c := e.Config
	if c.System == "running" {
		return &Target{GatewayURL: c.GatewayURL, ServiceToken: string(c.Token), APIKey: string(c.APIKey), Account: c.Account, TopicPrefix: c.Kafka.TopicPrefix}, func() {}, nil
	}
	logPath := filepath.Join(e.Dir, "zaits-"+e.Scenario+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	e.Log.Info("starting a private zaits", "binary", c.ZaitsBinary, "flags", flags, "log", logPath)
	sc := system.Config{Binary: c.ZaitsBinary, Kafka: c.Kafka, ClickHouseAddr: c.ClickHouseAddr, Account: c.Account, Flags: flags, Log: logFile}
	s, err := system.Start(ctx, sc)
	if err != nil && ctx.Err() == nil {
		// One more try: a start can fail on a busy machine (a port taken in
		// between, Kafka slow to answer); the log keeps both attempts.
		e.Log.Warn("the private zaits did not start; trying once more", "err", err)
		s, err = system.Start(ctx, sc)
	}
	if err != nil {
		logFile.Close()
		return nil, nil, err
	}
	stop := func() {
		defer logFile.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(sctx); err != nil {
			e.Log.Warn("stopping the private zaits", "err", err)
		}
	}
	return &Target{GatewayURL: s.GatewayURL, ServiceToken: s.ServiceToken, APIKey: s.APIKey, Account: s.Account, TopicPrefix: s.TopicPrefix, Database: s.Database, Started: true, Args: s.Args, Pid: s.Pid()}, stop, nil
}
