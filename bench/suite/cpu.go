package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// The kernel reports 100 to user space on every architecture Go runs
// Linux on (`getconf CLK_TCK`); reading sysconf(_SC_CLK_TCK) would need cgo.
const ClockTicks = 100

// Process is one process whose CPU time a run reports.
type Process struct {
	// Name is "zaits", "kafka" ("kafka <host:port>" per node when the
	// cluster has several), "clickhouse" or "bench".
	Name string
	// Pid is its process id; 0 when it was not found.
	Pid int
	// Absent says why it is not measured (empty when Pid is set).
	Absent string
}

// Processes are the processes of a run, in report order.
type Processes []Process

// CPUSample is the CPU time of each of Processes at one moment.
type CPUSample struct {
	At time.Time
	// Ticks is utime+stime of each process in clock ticks; -1 when its
	// stat could not be read (not found, or it exited).
	Ticks []int64
}

// CPUReport is the CPU each process used in a run's measured window.
type CPUReport struct {
	// Window is the time between the two samples, in seconds.
	Window float64 `json:"window_seconds"`
	// Deliveries is what the per-1,000 figures divide by: the run's
	// deliveries in the same window.
	Deliveries int64        `json:"deliveries"`
	Processes  []ProcessCPU `json:"processes"`
}

// ProcessCPU is one process's CPU in a window. A process that was not
// found or could not be read has Absent set and no figures (never zero).
type ProcessCPU struct {
	Process string `json:"process"`
	Pid     int    `json:"pid,omitempty"`
	Absent  string `json:"absent,omitempty"`
	// Seconds is user+system CPU time in the window.
	Seconds *float64 `json:"cpu_seconds,omitempty"`
	// PerThousand is Seconds per 1,000 deliveries (nil when there were none).
	PerThousand *float64 `json:"cpu_seconds_per_1000_deliveries,omitempty"`
	// Cores is Seconds over the window: how many cores it kept busy.
	Cores *float64 `json:"cores,omitempty"`
}

// Processes finds the processes a run's CPU is read for: zaits (t's
// process; t nil: the scenario has no system), every Kafka broker of
// -kafka.brokers and the cluster's metadata (the JVM running kafka.Kafka
// that listens on its port), ClickHouse (the clickhouse process listening
// on -bench.clickhouse-addr's port), and the bench itself. A process that
// is not found is Absent, with the reason.
func (e *Env) Processes(ctx context.Context, t *Target) Processes {
	procs := scanProc()
	var out Processes
	switch {
	case t == nil:
		out = append(out, Process{Name: "zaits", Absent: "no system in this scenario"})
	case t.Pid > 0:
		out = append(out, Process{Name: "zaits", Pid: t.Pid})
	default:
		out = append(out, findListening(procs, "zaits", "zaits", portOf(t.GatewayURL), func(p procInfo) bool { return p.comm == "zaits" }))
	}
	brokers := e.kafkaBrokers(ctx)
	isKafka := func(p procInfo) bool { return strings.Contains(p.cmdline, "kafka.Kafka") }
	for _, b := range brokers {
		name := "kafka"
		if len(brokers) > 1 {
			name = "kafka " + b
		}
		out = append(out, findListening(procs, name, "kafka.Kafka", portOf(b), isKafka))
	}
	if len(brokers) == 0 {
		out = append(out, Process{Name: "kafka", Absent: "no broker configured"})
	}
	isClickHouse := func(p procInfo) bool { return strings.HasPrefix(p.comm, "clickhouse") }
	out = append(out, findListening(procs, "clickhouse", "clickhouse", portOf(e.Config.ClickHouseAddr), isClickHouse))
	return append(out, Process{Name: "bench", Pid: os.Getpid()})
}

// kafkaBrokers is the bootstrap list plus every broker the cluster's
// metadata names (best effort: a node missing from the bootstrap list is
// still found), in order, without repeats.
func (e *Env) kafkaBrokers(ctx context.Context) []string {
	kc := e.Config.Kafka
	if kc == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, b := range kc.BrokerList() {
		add(b)
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if md, err := kc.Client().Metadata(mctx, &kafka.MetadataRequest{Topics: []string{}}); err == nil {
		for _, b := range md.Brokers {
			a := net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
			if !seen[a] && !bootstrapPort(out, b.Port) {
				add(a)
			}
		}
	}
	return out
}

// bootstrapPort says whether a listed address has port (the same broker
// under another host name, e.g. localhost and 127.0.0.1).
func bootstrapPort(addrs []string, port int) bool {
	for _, a := range addrs {
		if portOf(a) == port {
			return true
		}
	}
	return false
}

// portOf is the port of a host:port or URL, 0 when there is none.
func portOf(addr string) int {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Sample reads every process's CPU time now.
func (ps Processes) Sample() CPUSample {
	s := CPUSample{At: time.Now(), Ticks: make([]int64, len(ps))}
	for i, p := range ps {
		s.Ticks[i] = -1
		if p.Pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
		if err != nil {
			continue
		}
		if st, err := parseStat(b); err == nil {
			s.Ticks[i] = st.ticks
		}
	}
	return s
}

// Usage is each process's CPU between two samples, per 1,000 of the
// deliveries made in between.
func (ps Processes) Usage(from, to CPUSample, deliveries int64) *CPUReport {
	window := to.At.Sub(from.At)
	r := &CPUReport{Window: window.Seconds(), Deliveries: deliveries}
	for i, p := range ps {
		pc := ProcessCPU{Process: p.Name, Pid: p.Pid, Absent: p.Absent}
		if pc.Absent == "" && (i >= len(from.Ticks) || i >= len(to.Ticks) || from.Ticks[i] < 0 || to.Ticks[i] < 0) {
			pc.Absent = fmt.Sprintf("/proc/%d/stat not readable at both ends of the window (the process exited?)", p.Pid)
		}
		if pc.Absent == "" {
			pc.Seconds, pc.PerThousand, pc.Cores = cpuFigures(to.Ticks[i]-from.Ticks[i], window, deliveries)
		}
		r.Processes = append(r.Processes, pc)
	}
	return r
}

// cpuFigures turns clock ticks used in a window into CPU seconds, seconds
// per 1,000 deliveries (nil without deliveries) and cores (nil for an
// empty window).
func cpuFigures(ticks int64, window time.Duration, deliveries int64) (seconds, perThousand, cores *float64) {
	s := float64(ticks) / ClockTicks
	seconds = &s
	if deliveries > 0 {
		v := s / (float64(deliveries) / 1000)
		perThousand = &v
	}
	if window > 0 {
		v := s / window.Seconds()
		cores = &v
	}
	return seconds, perThousand, cores
}

// procStat is what the bench reads of /proc/<pid>/stat.
type procStat struct {
	comm  string
	ticks int64 // utime + stime
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid …" where comm
// may hold spaces and parentheses, so it ends at the last ')'; utime and
// stime are fields 14 and 15.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("stat: no (comm)")
	}
	fields := strings.Fields(string(b[end+1:]))
	// fields[0] is field 3 (state): field n is fields[n-3].
	if len(fields) < 13 {
		return procStat{}, fmt.Errorf("stat: %d fields after comm, want at least 13", len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("stat: utime/stime: %w", err)
	}
	return procStat{comm: string(b[open+1 : end]), ticks: utime + stime}, nil
}

// listeningInodes returns the socket inodes of /proc/net/tcp (or tcp6)
// lines in state LISTEN (0A) on port.
func listeningInodes(table []byte, port int) []string {
	var out []string
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
		if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
			continue
		}
		out = append(out, f[9])
	}
	return out
}

// procInfo is one process of /proc.
type procInfo struct {
	pid     int
	comm    string
	cmdline string // arguments joined by spaces
}

// scanProc lists the processes in /proc.
func scanProc() []procInfo {
	entries, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		out = append(out, procInfo{pid: pid, comm: strings.TrimSpace(string(comm)), cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))})
	}
	return out
}

// findListening is the process among procs that match and holds a socket
// listening on port (several servers of a kind may run at once: another
// test's private ClickHouse, a second Kafka cluster).
func findListening(procs []procInfo, name, what string, port int, match func(procInfo) bool) Process {
	if port == 0 {
		return Process{Name: name, Absent: "no port to find it by"}
	}
	inodes := map[string]bool{}
	for _, t := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(t); err == nil {
			for _, i := range listeningInodes(b, port) {
				inodes["socket:["+i+"]"] = true
			}
		}
	}
	candidates := 0
	for _, p := range procs {
		if !match(p) {
			continue
		}
		candidates++
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.pid, fd.Name())); err == nil && inodes[link] {
				return Process{Name: name, Pid: p.pid}
			}
		}
	}
	if candidates == 0 {
		return Process{Name: name, Absent: "no " + what + " process on this machine"}
	}
	return Process{Name: name, Absent: fmt.Sprintf("none of the %d %s processes here listens on port %d (or their sockets are not readable)", candidates, what, port)}
}

// cpuTable is the report's CPU table of runs: one row per run that has a
// CPU report, one column per process, each cell "s per 1,000 deliveries
// (cores)"; absent processes are listed under it with the reason.
func cpuTable(runs []*Measurement) string {
	var names []string
	seen := map[string]bool{}
	for _, m := range runs {
		if m.CPU == nil {
			continue
		}
		for _, p := range m.CPU.Processes {
			if !seen[p.Process] {
				seen[p.Process] = true
				names = append(names, p.Process)
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nCPU seconds per 1,000 deliveries (cores used) in the measured window, from /proc/<pid>/stat (utime+stime of all threads). " +
		"Kafka and ClickHouse are the whole servers: anything else using them in the window (another system, a test) is in their figures; read them with the load average.\n\n| run | deliveries | window |")
	for _, n := range names {
		b.WriteString(" " + n + " |")
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(names)) + "\n")
	absent := map[string]string{}
	for _, m := range runs {
		if m.CPU == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f s |", m.Name, m.CPU.Deliveries, m.CPU.Window)
		for _, n := range names {
			b.WriteString(" " + m.CPU.cell(n) + " |")
			if p := m.CPU.find(n); p != nil && p.Absent != "" {
				absent[n] = p.Absent
			}
		}
		b.WriteString("\n")
	}
	for _, n := range names {
		if a, ok := absent[n]; ok {
			fmt.Fprintf(&b, "\nAbsent: %s: %s.\n", n, cell(a))
		}
	}
	return b.String()
}

func (r *CPUReport) find(name string) *ProcessCPU {
	for i := range r.Processes {
		if r.Processes[i].Process == name {
			return &r.Processes[i]
		}
	}
	return nil
}

// cell is one process's figures: "0.123 s (0.45 cores)", "absent", "—".
func (r *CPUReport) cell(name string) string {
	p := r.find(name)
	switch {
	case p == nil:
		return "—"
	case p.Absent != "":
		return "absent"
	case p.PerThousand == nil && p.Cores != nil:
		return fmt.Sprintf("no deliveries (%.2f cores)", *p.Cores)
	case p.PerThousand == nil || p.Cores == nil:
		return fmt.Sprintf("%.2f s in all", *p.Seconds)
	}
	return fmt.Sprintf("%.3g s (%.2f cores)", *p.PerThousand, *p.Cores)
}

// Summary is the processes' cells on one line, for the terminal.
func (r *CPUReport) Summary() string {
	var parts []string
	for _, p := range r.Processes {
		parts = append(parts, p.Process+" "+r.cell(p.Process))
	}
	return strings.Join(parts, ", ")
}
