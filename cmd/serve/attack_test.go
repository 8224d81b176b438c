package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The attack suite (`make attack`; a short run in `make test`) runs the
// real binary with default flags on loopback and, one case at a time,
// attacks it while a well-behaved client keeps sending requests on one
// keep-alive connection: header-only big bodies, amplifying encodings,
// descriptor exhaustion and stalled messages. Each case is bounded in
// requests and time. It checks that the server stays up, that the good
// client is answered 200 throughout, and that RSS stays under the memory
// budget plus the baseline; ONNXSERVE_ATTACK_REPORT=1 appends the figures
// to bench/SOAK.md.

// attackNofile is the descriptor limit the attacked server runs under, so
// that exhausting it takes a few thousand connections.
const attackNofile = 4096

// attackScale is the size of the attacks: 1 for `make attack`, smaller
// for the short run in `make test`.
func attackScale() (per time.Duration, scale int) {
	if d, err := time.ParseDuration(os.Getenv("ONNXSERVE_ATTACK_DURATION")); err == nil && d > 0 {
		return d, 1
	}
	return time.Second, 16
}

// attackCase is one attack: start begins it and returns its stop, which
// ends it and waits for its goroutines.
type attackCase struct {
	name  string
	what  string
	start func(t *testing.T, p *process, scale int) (stop func())
}

// attackResult is what one case measured.
type attackResult struct {
	name, what      string
	goodN, goodBad  int
	p50             time.Duration
	peakRSS, endRSS int64
	outcomes        string
}

func TestAttack(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and attacks the binary")
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	per, scale := attackScale()
	bin := buildServer(t)
	wrap := []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", attackNofile, attackNofile), "--"}
	flags := strings.Fields(os.Getenv("ONNXSERVE_ATTACK_FLAGS"))
	p := startProcess(t, bin, wrap, copyRepo(t), flags...)
	pid := p.cmd.Process.Pid // prlimit execs the server in its place
	budget := metricValue(t, p, "onnxserve_inflight_request_bytes_limit")

	good := newGoodClient(p)
	defer good.close()
	good.run(200) // warm up
	runtime.GC()
	base := good.run(int(per / time.Millisecond))
	baseRSS := rss(t, pid)
	results := []attackResult{{name: "none (before)", what: "", goodN: len(base.lat), goodBad: base.bad, p50: base.p50(), peakRSS: baseRSS, endRSS: baseRSS}}

	for _, c := range attackCases() {
		t.Run(c.name, func(t *testing.T) {
			var outcomes outcomeCounts
			attackOutcomes = &outcomes
			stop := c.start(t, p, scale)
			var peak atomic.Int64
			sampled := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					peak.Store(max(peak.Load(), rss(t, pid)))
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			during := good.run(int(per / time.Millisecond))
			stop()
			close(done)
			<-sampled
			select {
			case err := <-p.exited:
				t.Fatalf("the server exited under %s: %v\n%s", c.name, err, p.log())
			default:
			}
			// Serves again once the attack is over, on a fresh connection too.
			if code := do(t, "POST", "http://"+p.http+"/v2/models/simple/infer", simpleBody(seq(0, 16), seq(1, 16)), nil); code != http.StatusOK {
				t.Fatalf("after %s: a fresh client got %d", c.name, code)
			}
			r := attackResult{name: c.name, what: c.what, goodN: len(during.lat), goodBad: during.bad, p50: during.p50(),
				peakRSS: peak.Load(), endRSS: rss(t, pid), outcomes: outcomes.String()}
			results = append(results, r)
			t.Logf("good client p50 %v (%d requests, %d not 200), peak RSS %s, attack outcomes %s", r.p50, r.goodN, r.goodBad, sizeMiB(r.peakRSS), r.outcomes)
			if during.bad > 0 {
				t.Errorf("the good client got %d answers other than 200 during %s: %v", during.bad, c.name, during.errs)
			}
			if limit := baseRSS + goHeadroom + int64(budget); r.peakRSS > limit {
				t.Errorf("peak RSS %s over the budget %s plus the baseline %s (RSS before, and the Go heap's headroom)", sizeMiB(r.peakRSS), sizeMiB(int64(budget)), sizeMiB(baseRSS+goHeadroom))
			}
		})
	}
	report := attackReport(results, int64(budget), baseRSS, per, scale, flags)
	t.Log("\n" + report)
	if os.Getenv("ONNXSERVE_ATTACK_REPORT") != "" && !t.Failed() {
		path := filepath.Join("..", "..", "bench", "SOAK.md")
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(append(bytes.TrimRight(old, "\n"), "\n\n"...), report...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const attackHeading = "# Attacks"

func attackReport(results []attackResult, budget, baseRSS int64, per time.Duration, scale int, flags []string) string {
	var b strings.Builder
	model := "unknown CPU"
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Model name" {
				model = strings.TrimSpace(v)
			}
		}
	}
	fmt.Fprintf(&b, "%s\n\nWritten by `make attack` (`TestAttack` in cmd/serve/attack_test.go) on %s, %s, %d CPUs, built without -race.\n\n",
		attackHeading, time.Now().UTC().Format("2006-01-02 15:04 UTC"), model, runtime.NumCPU())
	how := "default flags"
	if len(flags) > 0 {
		how = "`" + strings.Join(flags, " ") + "`, defaults otherwise,"
	}
	fmt.Fprintf(&b, "Command: `make attack ATTACK_DURATION=%v", per)
	if len(flags) > 0 {
		fmt.Fprintf(&b, " ATTACK_FLAGS='%s'", strings.Join(flags, " "))
	}
	b.WriteString("`.\n\n")
	fmt.Fprintf(&b, "The server binary runs with %s under a descriptor limit of %d (`prlimit`), so its `--max-connections` default is %d per port; its memory budget (`--max-inflight-bytes`) is %s. Each case attacks it for %v at scale 1/%d while a good client sends the `simple` model one JSON request at a time on one keep-alive connection; RSS is the server process's, sampled every 20 ms until the attack has stopped (its requests answered, its connections closed); \"RSS after\" is read once a fresh client has been served after it.\n\n",
		how, attackNofile, maxConnectionsFor(attackNofile), sizeMiB(budget), per, scale)
	b.WriteString("| attack | what | good client p50 | good requests (not 200) | peak RSS | RSS after | attack outcomes |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %v | %d (%d) | %s | %s | %s |\n", r.name, r.what, r.p50.Round(time.Microsecond), r.goodN, r.goodBad, sizeMiB(r.peakRSS), sizeMiB(r.endRSS), r.outcomes)
	}
	fmt.Fprintf(&b, "\nThe stated baseline is the RSS before the attacks, %s, plus the %s the Go heap may hold beyond the budget (its default memory limit is the budget plus that); budget plus baseline: %s.\n",
		sizeMiB(baseRSS), sizeMiB(goHeadroom), sizeMiB(budget+baseRSS+goHeadroom))
	return b.String()
}

func sizeMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// rss is the resident set of process pid, in bytes.
func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metricValue reads one unlabelled sample from the metrics port.
func metricValue(t *testing.T, p *process, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// goodClient sends one request at a time on one keep-alive connection,
// opened before any attack (a fresh one could be refused over the
// connection limit).
type goodClient struct {
	p      *process
	client *http.Client
	body   string
}

func newGoodClient(p *process) *goodClient {
	return &goodClient{p: p, body: simpleBody(seq(0, 16), seq(1, 16)),
		client: &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}}
}

func (g *goodClient) close() { g.client.CloseIdleConnections() }

type goodRun struct {
	lat  []time.Duration
	bad  int
	errs []string
}

func (r goodRun) p50() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[len(s)/2]
}

// run sends requests for ms milliseconds (at least one).
func (g *goodClient) run(ms int) goodRun {
	var r goodRun
	end := time.Now().Add(time.Duration(ms) * time.Millisecond)
	for len(r.lat) == 0 || time.Now().Before(end) {
		start := time.Now()
		resp, err := g.client.Post("http://"+g.p.http+"/v2/models/simple/infer", "application/json", strings.NewReader(g.body))
		if err != nil {
			r.bad++
			r.errs = append(r.errs, err.Error())
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.lat = append(r.lat, time.Since(start))
		if resp.StatusCode != http.StatusOK {
			r.bad++
			r.errs = append(r.errs, resp.Status)
		}
	}
	return r
}

// outcomeCounts counts how the attack's own requests ended.
type outcomeCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// attackOutcomes is the running case's counts.
var attackOutcomes *outcomeCounts

func (o *outcomeCounts) add(k string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	if o.m == nil {
		o.m = map[string]int{}
	}
	o.m[k]++
	o.mu.Unlock()
}

func (o *outcomeCounts) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]string, 0, len(o.m))
	for k := range o.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, o.m[k]))
	}
	return strings.Join(parts, ", ")
}

func attackCases() []attackCase {
	return []attackCase{
		{"header-only big bodies", "64 HTTP requests declaring `Content-Length: 67108863`, sending nothing more, held open", headerOnly},
		{"amplifying encodings", "gRPC `bytes_contents` of empty strings, gRPC `int64_contents` of one-byte varints, JSON of empty BYTES strings: one sender each, messages of 60 MB at scale 1", amplify},
		{"descriptor exhaustion", "idle connections, half HTTP half gRPC, twice the descriptor limit, held open", exhaust},
		{"stalled messages", "64 gRPC messages declaring 60 MB with 60 KB sent, 64 HTTP bodies declaring 60 MB with 1 MB sent, held", stall},
	}
}

// until runs f in n goroutines until stop, and returns that stop.
func until(n int, f func(stopped func() bool)) func() {
	var quit atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !quit.Load() {
				f(quit.Load)
			}
		}()
	}
	return func() { quit.Store(true); wg.Wait() }
}

func headerOnly(t *testing.T, p *process, _ int) func() {
	var conns []net.Conn
	for range 64 {
		c, err := net.Dial("tcp", p.http)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108863\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		attackOutcomes.add("held")
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

// rawCodec sends pre-encoded protobuf bytes as a gRPC message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = slices.Clone(data); return nil }
func (rawCodec) Name() string                       { return "proto" }

// inferWire encodes a ModelInferRequest for "simple" with one input of
// datatype dt and shape [n] whose InferTensorContents are contents.
func inferWire(dt string, n int, contents []byte) []byte {
	var in []byte
	in = protowire.AppendTag(in, 1, protowire.BytesType)
	in = protowire.AppendString(in, "INPUT0")
	in = protowire.AppendTag(in, 2, protowire.BytesType)
	in = protowire.AppendString(in, dt)
	in = protowire.AppendTag(in, 3, protowire.BytesType)
	in = protowire.AppendBytes(in, protowire.AppendVarint(nil, uint64(n)))
	in = protowire.AppendTag(in, 5, protowire.BytesType)
	in = protowire.AppendBytes(in, contents)
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, "simple")
	m = protowire.AppendTag(m, 5, protowire.BytesType)
	return protowire.AppendBytes(m, in)
}

func amplify(t *testing.T, p *process, scale int) func() {
	n := 30_000_000 / scale
	// 2 bytes per element on the wire: tag and empty length.
	empties := bytes.Repeat([]byte{8<<3 | 2, 0}, n)
	bytesMsg := inferWire("BYTES", n, empties)
	var packed []byte
	packed = protowire.AppendTag(packed, 3, protowire.BytesType)
	packed = protowire.AppendBytes(packed, make([]byte, 2*n)) // 2n zero varints
	int64Msg := inferWire("INT64", 2*n, packed)
	jn := 20_000_000 / scale
	var js strings.Builder
	js.WriteString(`{"inputs":[{"name":"INPUT0","shape":[` + strconv.Itoa(jn) + `],"datatype":"BYTES","data":[""`)
	js.WriteString(strings.Repeat(`,""`, jn-1))
	js.WriteString(`]}]}`)
	jsonBody := js.String()

	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(1<<30), grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: testTimeout}
	send := func(msg []byte, kind string) {
		var out []byte
		err := conn.Invoke(context.Background(), "/inference.GRPCInferenceService/ModelInfer", &msg, &out)
		attackOutcomes.add(kind + " " + grpcCode(err))
	}
	stopGRPC := until(1, func(func() bool) { send(bytesMsg, "bytes_contents") })
	stopInt := until(1, func(func() bool) { send(int64Msg, "int64_contents") })
	stopJSON := until(1, func(func() bool) {
		resp, err := hc.Post("http://"+p.http+"/v2/models/simple/infer", "application/json", strings.NewReader(jsonBody))
		if err != nil {
			attackOutcomes.add("json error")
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		attackOutcomes.add("json " + strconv.Itoa(resp.StatusCode))
	})
	return func() {
		stopGRPC()
		stopInt()
		stopJSON()
		_ = conn.Close()
		hc.CloseIdleConnections()
	}
}

func grpcCode(err error) string { return status.Code(err).String() }

func exhaust(t *testing.T, p *process, scale int) func() {
	n := 2 * attackNofile / scale
	var conns []net.Conn
	for i := range n {
		addr := p.http
		if i%2 == 1 {
			addr = p.grpc
		}
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			attackOutcomes.add("dial failed")
			continue
		}
		conns = append(conns, c)
		attackOutcomes.add("opened")
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

func stall(t *testing.T, p *process, _ int) func() {
	var conns []net.Conn
	for range 64 {
		c, err := net.Dial("tcp", p.grpc)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		fr := http2.NewFramer(c, c)
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/inference.GRPCInferenceService/ModelInfer"},
			{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_, _ = c.Write([]byte(http2.ClientPreface))
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
		prefix := binary.BigEndian.AppendUint32([]byte{0}, 60<<20)
		_ = fr.WriteData(1, false, prefix)
		chunk := make([]byte, 15<<10)
		for range 4 { // 60 KB, within the initial window
			_ = fr.WriteData(1, false, chunk)
		}
		attackOutcomes.add("grpc held")
	}
	body := make([]byte, 1<<20)
	for range 64 {
		c, err := net.Dial("tcp", p.http)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 62914560\r\n\r\n")
		_, _ = c.Write(body)
		attackOutcomes.add("http held")
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}
