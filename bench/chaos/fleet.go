package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zaits/webhooks/bench/system"
	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/broker"
)

// fleet is a private Zaits made of separate processes, every component
// scaled out as in production: Gateways gateways (each with its router),
// Dispatchers dispatchers and one analytics, all on one topic prefix,
// consumer groups and ClickHouse database of their own.
type fleet struct {
	bin     string
	kafka   broker.Config
	chAddr  string
	log     io.Writer
	env     []string
	Prefix  string
	DB      string
	Token   string // service token: publishes for any account
	APIKey  string // Account's management key
	Account string
	procs   []*proc
}

// proc is one zaits process of the fleet.
type proc struct {
	Name   string // gateway-1, dispatcher-2, analytics-1
	sub    string
	args   []string
	Ops    string // ops address (host:port)
	Public string // gateway only: the public API's base URL

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startFleet starts the processes and waits until every /readyz answers 200.
func startFleet(ctx context.Context, bin string, kc *broker.Config, chAddr string, gateways, dispatchers int, log io.Writer) (*fleet, error) {
	token, tokenEntry, err := gateway.MintKey("chaos", true)
	if err != nil {
		return nil, err
	}
	account := "acct_chaos"
	key, keyEntry, err := gateway.MintKey(account, false)
	if err != nil {
		return nil, err
	}
	aes := make([]byte, 32)
	_, _ = rand.Read(aes)
	suffix := broker.RandomSuffix(8)
	f := &fleet{bin: bin, kafka: *kc, chAddr: chAddr, log: log, Prefix: "chaos-" + suffix, DB: "chaos_" + suffix,
		Token: token, APIKey: key, Account: account,
		env: append(os.Environ(), "ZAITS_ENDPOINTS_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(aes))}
	f.kafka.TopicPrefix = f.Prefix
	common := []string{"-kafka.brokers=" + kc.Brokers, "-kafka.topic-prefix=" + f.Prefix,
		fmt.Sprintf("-kafka.replication-factor=%d", kc.ReplicationFactor), "-log.format=json", "-log.level=info"}
	ch := []string{"-clickhouse.addr=" + chAddr, "-clickhouse.database=" + f.DB}
	add := func(sub string, n int, extra func(ops, public, routerOps string) []string) error {
		for i := 1; i <= n; i++ {
			ports, err := system.FreePorts(3)
			if err != nil {
				return err
			}
			p := &proc{Name: fmt.Sprintf("%s-%d", sub, i), sub: sub, Ops: ports[0]}
			if sub == "gateway" {
				p.Public = "http://" + ports[1]
			}
			p.args = append(append([]string{sub}, common...), extra(ports[0], ports[1], ports[2])...)
			f.procs = append(f.procs, p)
		}
		return nil
	}
	err = errors.Join(
		add("analytics", 1, func(ops, _, _ string) []string { return append([]string{"-analytics.ops-listen=" + ops}, ch...) }),
		add("dispatcher", dispatchers, func(ops, _, _ string) []string {
			return []string{"-dispatcher.ops-listen=" + ops, "-dispatcher.group=" + f.Prefix + ".dispatcher", "-delivery.allow-networks=127.0.0.0/8"}
		}),
		// Each gateway process runs its router (zaits gateway), on an ops port of its own.
		add("gateway", gateways, func(ops, public, routerOps string) []string {
			return append([]string{"-gateway.ops-listen=" + ops, "-gateway.listen=" + public, "-router.ops-listen=" + routerOps,
				"-gateway.api-keys=" + keyEntry, "-gateway.service-tokens=" + tokenEntry,
				"-gateway.allow-http", "-gateway.allow-private", "-delivery.allow-networks=127.0.0.0/8",
				"-gateway.rate-limit=1000000", "-gateway.rate-burst=1000000"}, ch...)
		}))
	if err != nil {
		return nil, err
	}
	for _, p := range f.procs {
		if err := f.start(p); err != nil {
			return nil, errors.Join(err, f.stop())
		}
	}
	if err := f.waitReady(ctx, 180*time.Second); err != nil {
		return nil, errors.Join(err, f.stop())
	}
	return f, nil
}

// start (re)starts p.
func (f *fleet) start(p *proc) error {
	cmd := exec.Command(f.bin, p.args...)
	cmd.Env = f.env
	cmd.Stdout, cmd.Stderr = f.log, f.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

// kill sends SIGKILL to p and waits until it is gone.
func (f *fleet) kill(p *proc) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	<-exited
	return nil
}

// restart starts p again and waits until its /readyz answers 200.
func (f *fleet) restart(ctx context.Context, p *proc) error {
	if err := f.start(p); err != nil {
		return err
	}
	return waitReady(ctx, 120*time.Second, p)
}

func (f *fleet) waitReady(ctx context.Context, timeout time.Duration) error {
	return waitReady(ctx, timeout, f.procs...)
}

// waitReady polls the procs' /readyz until all answer 200.
func waitReady(ctx context.Context, timeout time.Duration, procs ...*proc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		var last error
		for _, p := range procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited before it was ready (see the log)", p.Name)
			default:
			}
			resp, err := c.Get("http://" + p.Ops + "/readyz")
			if err != nil {
				last = fmt.Errorf("%s: %w", p.Name, err)
				break
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				last = fmt.Errorf("%s/readyz: %d %s", p.Name, resp.StatusCode, strings.TrimSpace(string(b)))
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// named returns the process called name.
func (f *fleet) named(name string) *proc {
	for _, p := range f.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// gateways returns the public URLs of the gateways, in order.
func (f *fleet) gateways() []string {
	var out []string
	for _, p := range f.procs {
		if p.Public != "" {
			out = append(out, p.Public)
		}
	}
	return out
}

// stop stops every process (SIGTERM, SIGKILL after 30 s) in reverse start
// order, then removes the topics and the database.
func (f *fleet) stop() error {
	var errs []error
	for i := len(f.procs) - 1; i >= 0; i-- {
		p := f.procs[i]
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		select {
		case <-exited:
			continue
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			errs = append(errs, fmt.Errorf("%s did not stop on SIGTERM within 30 s: killed", p.Name))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs = append(errs, system.Remove(ctx, &f.kafka, f.chAddr, f.DB))
	return errors.Join(errs...)
}
