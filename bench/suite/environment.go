package suite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"
)

// Environment describes the machine and the system a run measured.
type Environment struct {
	Host       string  `json:"host"`
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	MemoryGiB  float64 `json:"memory_gib"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
	Kafka      string  `json:"kafka"`
	ClickHouse string  `json:"clickhouse"`
	GitCommit  string  `json:"git_commit"`
	// LoadAvg is /proc/loadavg at the start: other work on the machine skews results.
	LoadAvg string `json:"loadavg"`
	// Topics are the partition counts of the system's topics (<prefix>.*) as Kafka reports them.
	Topics map[string]int `json:"topics,omitempty"`
	// Config is the bench's effective configuration (secrets redacted).
	Config map[string]string `json:"config,omitempty"`
}

// Collect asks the machine, Kafka and ClickHouse. Anything it cannot learn
// is recorded as "unknown (<why>)", never guessed.
func Collect(ctx context.Context, cfg *Config) Environment {
	e := Environment{Cores: runtime.NumCPU(), Go: runtime.Version()}
	e.Host, _ = os.Hostname()
	e.CPU = cpuModel()
	e.MemoryGiB = memTotalGiB()
	e.Kernel = readTrim("/proc/sys/kernel/osrelease")
	e.LoadAvg = readTrim("/proc/loadavg")
	e.GitCommit = gitCommit()
	e.Kafka, e.Topics = kafkaInfo(ctx, cfg)
	e.ClickHouse = clickhouseVersion(ctx, cfg.ClickHouseAddr)
	return e
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown (no model name in /proc/cpuinfo)"
}

func memTotalGiB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return float64(int(kb/1024/1024*10+0.5)) / 10
		}
	}
	return 0
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		commit += " (working tree has uncommitted changes)"
	}
	return commit
}

// kafkaInfo reports the Kafka version and the prefix's partition counts.
// Kafka does not tell clients its release version; the ApiVersions answer
// proves the broker is up and the version comes from the jars the local
// stack installed (.state/kafka/libs/.version, ZAITS_STATE_DIR honoured).
func kafkaInfo(ctx context.Context, cfg *Config) (string, map[string]int) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl := cfg.Kafka.Client()
	api, err := cl.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil {
		return "unknown (broker " + cfg.Kafka.Brokers + " did not answer ApiVersions: " + err.Error() + ")", nil
	}
	version := "unknown release (not the local stack's broker)"
	state := os.Getenv("ZAITS_STATE_DIR")
	if state == "" {
		state = ".state"
	}
	if b, err := os.ReadFile(filepath.Join(state, "kafka", "libs", ".version")); err == nil {
		version = strings.TrimSpace(string(b))
	}
	version = fmt.Sprintf("%s (broker at %s answers %d APIs)", version, cfg.Kafka.Brokers, len(api.ApiKeys))
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return version, nil
	}
	topics := map[string]int{}
	for _, t := range md.Topics {
		if strings.HasPrefix(t.Name, cfg.Kafka.TopicPrefix+".") && t.Error == nil {
			topics[t.Name] = len(t.Partitions)
		}
	}
	return version, topics
}

func clickhouseVersion(ctx context.Context, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native, DialTimeout: 3 * time.Second})
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer conn.Close()
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "unknown (ClickHouse at " + addr + ": " + err.Error() + ")"
	}
	return v
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
