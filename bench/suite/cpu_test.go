package suite

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zaits/webhooks/bench/load"
)

// A stat line as the kernel writes it: 52 fields, comm in parentheses.
func statLine(pid int, comm string, utime, stime int64) string {
	rest := make([]string, 49) // fields 4..52
	for i := range rest {
		rest[i] = "0"
	}
	rest[14-4], rest[15-4] = fmt.Sprint(utime), fmt.Sprint(stime)
	rest[16-4], rest[17-4] = "999", "999" // cutime, cstime: children, not counted
	return fmt.Sprintf("%d (%s) S %s\n", pid, comm, strings.Join(rest, " "))
}

func TestParseStat(t *testing.T) {
	f := func(in string, wantComm string, wantTicks int64, wantErr bool) {
		t.Helper()
		got, err := parseStat([]byte(in))
		if (err != nil) != wantErr {
			t.Fatalf("parseStat(%q): error %v, want error %v", in, err, wantErr)
		}
		if err == nil && (got.comm != wantComm || got.ticks != wantTicks) {
			t.Errorf("parseStat(%q) = %q %d ticks, want %q %d", in, got.comm, got.ticks, wantComm, wantTicks)
		}
	}
	f(statLine(1, "java", 1200, 34), "java", 1234, false)
	f(statLine(7, "clickhouse-serv", 0, 0), "clickhouse-serv", 0, false)
	// comm holds spaces and parentheses: it ends at the last ')'.
	f(statLine(42, "my (odd) proc", 10, 5), "my (odd) proc", 15, false)
	f(statLine(42, ") S 1 2 3", 3, 4), ") S 1 2 3", 7, false)
	f(statLine(42, "", 1, 1), "", 2, false)
	// A real line from this machine's kernel (the Kafka broker's JVM).
	f("32110 (java) S 1 32110 32110 0 -1 4194304 329125 78 1342 0 26157 9230 0 0 20 0 100 0 1231663 7811366912 312352 18446744073709551615 94568302182400 94568302183285 140732422591344 0 0 0 0 3 16800972 0 0 0 17 1 0 0 0 0 0 94568302193984 94568302194712 94569073848320 140732422596935 140732422597214 140732422597214 140732422598634 0\n",
		"java", 26157+9230, false)
	f("", "", 0, true)
	f("12 java S 1 2", "", 0, true)
	f("12 (java) S 1 2 3 4 5 6 7 8 9 10", "", 0, true) // too short
	f("12 (java) S 1 2 3 4 5 6 7 8 9 10 x y", "", 0, true)
}

func TestCPUFigures(t *testing.T) {
	f := func(ticks int64, window time.Duration, deliveries int64, wantSeconds float64, wantPer, wantCores string) {
		t.Helper()
		s, per, cores := cpuFigures(ticks, window, deliveries)
		str := func(p *float64) string {
			if p == nil {
				return "nil"
			}
			return fmt.Sprintf("%.4g", *p)
		}
		if *s != wantSeconds || str(per) != wantPer || str(cores) != wantCores {
			t.Errorf("cpuFigures(%d, %s, %d) = %v s, %s s/1000, %s cores; want %v, %s, %s", ticks, window, deliveries, *s, str(per), str(cores), wantSeconds, wantPer, wantCores)
		}
	}
	// 15 s of 0.73 cores = 1095 ticks; 15,000 deliveries/s × 15 s = 225,000.
	f(1095, 15*time.Second, 225_000, 10.95, "0.04867", "0.73")
	f(100, time.Second, 1000, 1, "1", "1")
	f(250, 2*time.Second, 500, 2.5, "5", "1.25") // two cores busy, few deliveries
	f(0, 10*time.Second, 5000, 0, "0", "0")      // present and idle: zero, not absent
	f(300, 10*time.Second, 0, 3, "nil", "0.3")   // no deliveries: no per-1,000 figure
	f(300, 0, 10, 3, "300", "nil")
}

func TestUsage(t *testing.T) {
	ps := Processes{{Name: "zaits", Pid: 10}, {Name: "kafka", Pid: 20}, {Name: "clickhouse", Absent: "no clickhouse process on this machine"}, {Name: "bench", Pid: 30}}
	t0 := time.Unix(1000, 0)
	from := CPUSample{At: t0, Ticks: []int64{500, 1000, -1, 42}}
	to := CPUSample{At: t0.Add(10 * time.Second), Ticks: []int64{1230, -1, -1, 392}} // kafka exited
	r := ps.Usage(from, to, 100_000)
	if r.Window != 10 || r.Deliveries != 100_000 || len(r.Processes) != 4 {
		t.Fatalf("report %+v", r)
	}
	f := func(name, want string) {
		t.Helper()
		if got := r.cell(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	f("zaits", "0.073 s (0.73 cores)")
	f("kafka", "absent")
	f("clickhouse", "absent")
	f("bench", "0.035 s (0.35 cores)")
	f("nope", "—")
	for _, p := range r.Processes[1:3] {
		if p.Absent == "" || p.Seconds != nil || p.PerThousand != nil || p.Cores != nil {
			t.Errorf("%s: %+v, want absent without figures", p.Process, p)
		}
	}
	table := cpuTable([]*Measurement{{Stats: &load.Stats{Name: "run A"}, CPU: r}, {Stats: &load.Stats{Name: "no cpu"}}})
	for _, want := range []string{"| run | deliveries | window | zaits | kafka | clickhouse | bench |", "| run A | 100000 | 10.0 s | 0.073 s (0.73 cores) | absent | absent | 0.035 s (0.35 cores) |", "Absent: clickhouse: no clickhouse process on this machine."} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "no cpu") {
		t.Errorf("a run without a CPU report has a row:\n%s", table)
	}
}

func TestListeningInodes(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2384 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 888 1 0000000000000000 100 0 0 10 0
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2384 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
`
	f := func(in string, port int, want string) {
		t.Helper()
		if got := strings.Join(listeningInodes([]byte(in), port), ","); got != want {
			t.Errorf("port %d: %q, want %q", port, got, want)
		}
	}
	f(table, 9092, "31337") // the established connection (01) is not a listener; :C384 is another port
	f(table, 9000, "4242")
	f(table, 50052, "888")
	f(table, 8123, "")
	f(tcp6, 9092, "5555")
	f("", 9092, "")
}

func TestPortOf(t *testing.T) {
	f := func(in string, want int) {
		t.Helper()
		if got := portOf(in); got != want {
			t.Errorf("portOf(%q) = %d, want %d", in, got, want)
		}
	}
	f("127.0.0.1:9092", 9092)
	f("http://127.0.0.1:8080", 8080)
	f("http://[::1]:41234/", 41234)
	f("localhost", 0)
	f("", 0)
}

// The real /proc: this test process is found by the socket it listens on
// (another process of its kind, not listening there, is not), and its CPU
// time grows while it works.
func TestProcessesOfThisMachine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	me := func(p procInfo) bool { return p.pid == os.Getpid() }
	if p := findListening(scanProc(), "me", "test", port, me); p.Pid != os.Getpid() || p.Absent != "" {
		t.Errorf("listening on %d: %+v, want pid %d", port, p, os.Getpid())
	}
	l.Close()
	if p := findListening(scanProc(), "me", "test", port, me); p.Pid != 0 || !strings.Contains(p.Absent, "listens on port") {
		t.Errorf("after closing: %+v, want absent", p)
	}
	if p := findListening(scanProc(), "x", "nothing", port, func(procInfo) bool { return false }); !strings.Contains(p.Absent, "no nothing process") {
		t.Errorf("no candidate: %+v", p)
	}

	ps := Processes{{Name: "bench", Pid: os.Getpid()}, {Name: "gone", Pid: 1 << 30}}
	from := ps.Sample()
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
	}
	r := ps.Usage(from, ps.Sample(), 1000)
	if b := r.Processes[0]; b.Absent != "" || *b.Seconds <= 0 || *b.PerThousand != *b.Seconds || *b.Cores <= 0 {
		t.Errorf("bench after 300 ms of work: %+v", b)
	}
	if g := r.Processes[1]; g.Absent == "" {
		t.Errorf("a pid that does not exist: %+v, want absent", g)
	}
}
