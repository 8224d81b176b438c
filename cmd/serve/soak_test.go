package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/runtime"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Soak settings. The limits are small so that oversized requests are
// cheap to make.
const (
	soakDefaultDuration = 20 * time.Second
	soakShortDuration   = 5 * time.Second
	soakWorkers         = 6
	soakMaxBody         = 256 << 10
	soakMaxElements     = 4096
	// soakSettle bounds the wait for the repository to settle and for
	// goroutines to wind down after the load.
	soakSettle = 60 * time.Second
	// soakGoroutineSlack is how many goroutines more than at the start
	// may remain: the chaos leaves the classifier with a different number
	// of versions, each with its own batcher goroutines.
	soakGoroutineSlack = 40
	// soakRSSGrowthLimit is the generous bound on RSS growth; the report
	// gives the actual figure.
	soakRSSGrowthLimit = 1 << 30
)

// soakDuration is ONNXSERVE_SOAK_DURATION, else 20s (5s with -short).
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("ONNXSERVE_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("ONNXSERVE_SOAK_DURATION=%q: want a positive duration", v)
		}
		return d
	}
	if testing.Short() {
		return soakShortDuration
	}
	return soakDefaultDuration
}

// soakStats counts requests by class and outcome, and keeps the first
// failures. Safe for concurrent use.
type soakStats struct {
	mu       sync.Mutex
	outcomes map[string]map[string]int64
	failures []string
	failed   int64
}

func newSoakStats() *soakStats {
	return &soakStats{outcomes: map[string]map[string]int64{}}
}

func (s *soakStats) record(class, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.outcomes[class]
	if m == nil {
		m = map[string]int64{}
		s.outcomes[class] = m
	}
	m[outcome]++
}

// fail records a request whose outcome broke the rules.
func (s *soakStats) fail(class, format string, args ...any) {
	s.record(class, "UNEXPECTED")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed++
	if len(s.failures) < 20 {
		s.failures = append(s.failures, class+": "+fmt.Sprintf(format, args...))
	}
}

func (s *soakStats) total() (n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.outcomes {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// soakRun is one soak: the server, its clients and the counters.
type soakRun struct {
	t      *testing.T
	ts     *testServer
	repo   string
	http   *http.Client
	grpc   inference.GRPCInferenceServiceClient
	stats  *soakStats
	seq    atomic.Int64 // makes every valid request's values unique
	chaos  map[string]int64
	models [2][]byte // the bundled classifier versions, copied in as new versions
}

// TestSoak is the chaos soak: concurrent HTTP and gRPC load mixing valid,
// malformed, oversized, expiring, cancelled and cut-off requests while the
// classifier's versions are hot-swapped, a model file is corrupted and
// restored and the traffic split changes. Every valid request must get
// exactly its own rows back, every invalid one its error class; afterwards
// goroutines, memory and ONNX Runtime sessions must be back near where they
// started. `make soak` runs it for 5 minutes and writes bench/SOAK.md.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	repo := copyRepo(t)
	core, logs := observer.New(zapcore.WarnLevel)
	ts := startLogged(t, zap.New(core), repo,
		"--max-request-body-size", strconv.Itoa(soakMaxBody),
		"--grpc-max-recv-msg-size", strconv.Itoa(soakMaxBody),
		"--max-tensor-elements", strconv.Itoa(soakMaxElements))
	ts.waitReady(t)

	r := &soakRun{t: t, ts: ts, repo: repo, stats: newSoakStats(), chaos: map[string]int64{},
		http: &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * soakWorkers}}}
	for i := range r.models {
		b, err := os.ReadFile(filepath.Join(repo, "classifier", strconv.Itoa(i+1), "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		r.models[i] = b
	}
	conn, err := grpc.NewClient(ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.grpc = inference.NewGRPCInferenceServiceClient(conn)
	// The baseline is the warm, idle server with its clients connected.
	r.httpValid(rand.New(rand.NewPCG(5, 6)))
	r.grpcValid(rand.New(rand.NewPCG(7, 8)))
	goroutinesBefore := goruntime.NumGoroutine()
	rssBefore := rssBytes(t, "VmRSS")
	heapBefore := goHeap()
	sessionsBefore := runtime.LiveSessions()

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				r.one(rng)
			}
		}()
	}
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		r.runChaos(ctx)
	}()
	wg.Wait()
	<-chaosDone
	elapsed := time.Since(start)

	ready := r.settle()
	r.checkStillServing()
	rssAfter := rssBytes(t, "VmRSS")
	rssPeak := rssBytes(t, "VmHWM")
	heapAfter := goHeap()

	r.http.CloseIdleConnections()
	goroutinesAfter := waitGoroutines(goroutinesBefore + soakGoroutineSlack)
	if err := conn.Close(); err != nil {
		t.Errorf("closing the gRPC client: %v", err)
	}
	ts.shutdown(t)
	sessionsAfterShutdown := runtime.LiveSessions()

	var panics []string
	logged := map[string]int{}
	for _, e := range logs.All() {
		logged[e.Level.String()+": "+e.Message]++
		if strings.Contains(strings.ToLower(e.Message), "panic") {
			panics = append(panics, e.Message)
		}
	}
	if os.Getenv("ONNXSERVE_SOAK_REPORT") == "1" {
		r.writeReport(soakReport{
			duration: elapsed, ready: ready,
			rssBefore: rssBefore, rssAfter: rssAfter, rssPeak: rssPeak,
			heapBefore: heapBefore, heapAfter: heapAfter, sessionsBefore: sessionsBefore,
			goroutinesBefore: goroutinesBefore, goroutinesAfter: goroutinesAfter,
			sessionsAfterShutdown: sessionsAfterShutdown, panics: len(panics),
			logged: logged,
		})
	}

	t.Logf("soak: %v, %d requests, %d unexpected; RSS %s -> %s (peak %s); Go heap %s -> %s; goroutines %d -> %d",
		elapsed.Round(time.Millisecond), r.stats.total(), r.stats.failed, mib(rssBefore), mib(rssAfter), mib(rssPeak),
		mib(heapBefore), mib(heapAfter), goroutinesBefore, goroutinesAfter)
	for _, f := range r.stats.failures {
		t.Errorf("unexpected outcome: %s", f)
	}
	if len(panics) > 0 {
		t.Errorf("panics logged: %v", panics)
	}
	if r.stats.outcomes["http-valid"]["200"] == 0 || r.stats.outcomes["grpc-valid"]["OK"] == 0 || r.chaos["swap"] == 0 {
		t.Errorf("the soak did too little to prove anything: %v, chaos %v", r.stats.outcomes, r.chaos)
	}
	if goroutinesAfter > goroutinesBefore+soakGoroutineSlack {
		t.Errorf("%d goroutines after the load, %d before", goroutinesAfter, goroutinesBefore)
	}
	if rssAfter > rssBefore+soakRSSGrowthLimit {
		t.Errorf("RSS grew from %s to %s", mib(rssBefore), mib(rssAfter))
	}
}

// one sends one request of a class picked at random and checks its
// outcome.
func (r *soakRun) one(rng *rand.Rand) {
	switch p := rng.IntN(100); {
	case p < 20:
		r.httpValid(rng)
	case p < 40:
		r.grpcValid(rng)
	case p < 48:
		r.grpcStream(rng)
	case p < 56:
		r.httpClassifier()
	case p < 62:
		r.malformed(rng)
	case p < 68:
		r.oversized(rng)
	case p < 78:
		r.deadline(rng)
	case p < 88:
		r.cancel(rng)
	default:
		r.cut(rng)
	}
}

// simpleValues returns an id and INPUT0 and INPUT1 values for rows rows,
// all unique to one request, so rows that reach the wrong request show.
func (r *soakRun) simpleValues(rows int) (id string, a, b []int32) {
	n := r.seq.Add(1)
	base := int32(n) * 64
	a, b = make([]int32, rows*16), make([]int32, rows*16)
	for i := range a {
		a[i] = base + int32(i)
		b[i] = int32(i%7) - base/2
	}
	return strconv.FormatInt(n, 10), a, b
}

// checkSimple reports what is wrong with outputs of "simple" for a and b.
func checkSimple(a, b, sum, diff []int32) string {
	if len(sum) != len(a) || len(diff) != len(a) {
		return fmt.Sprintf("%d and %d output elements for %d inputs", len(sum), len(diff), len(a))
	}
	for i := range a {
		if sum[i] != a[i]+b[i] || diff[i] != a[i]-b[i] {
			return fmt.Sprintf("element %d: %d, %d for inputs %d, %d (another request's rows?)", i, sum[i], diff[i], a[i], b[i])
		}
	}
	return ""
}

func jsonInts(v []int32) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// simpleJSON is an HTTP request for "simple" with extra request fields.
func simpleJSON(id string, rows int, a, b []int32, params string) string {
	shape := fmt.Sprintf("[%d,16]", rows)
	return fmt.Sprintf(`{"id":%q,%s"inputs":[{"name":"INPUT0","shape":%s,"datatype":"INT32","data":%s},{"name":"INPUT1","shape":%s,"datatype":"INT32","data":%s}]}`,
		id, params, shape, jsonInts(a), shape, jsonInts(b))
}

// postSimple posts a request for "simple" and checks a 200 answer's rows;
// it returns the status and any client error.
func (r *soakRun) postSimple(ctx context.Context, class string, rows int, params string) (int, error) {
	id, a, b := r.simpleValues(rows)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.ts.http+"/v2/models/simple/infer", strings.NewReader(simpleJSON(id, rows, a, b, params)))
	if err != nil {
		return 0, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		ID      string `json:"id"`
		Outputs []struct {
			Name string  `json:"name"`
			Data []int32 `json:"data"`
		} `json:"outputs"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err() // gave up while the answer was arriving
		}
		if resp.StatusCode == http.StatusOK {
			r.stats.fail(class, "undecodable 200 answer: %v", err)
		}
		return resp.StatusCode, nil
	}
	if resp.StatusCode == http.StatusOK {
		if out.ID != id || len(out.Outputs) != 2 {
			r.stats.fail(class, "answer for id %q has id %q and %d outputs", id, out.ID, len(out.Outputs))
		} else if msg := checkSimple(a, b, out.Outputs[0].Data, out.Outputs[1].Data); msg != "" {
			r.stats.fail(class, "%s", msg)
		}
	}
	return resp.StatusCode, nil
}

func (r *soakRun) httpValid(rng *rand.Rand) {
	code, err := r.postSimple(context.Background(), "http-valid", 1+rng.IntN(3), "")
	switch {
	case err != nil:
		r.stats.fail("http-valid", "%v", err)
	case code != http.StatusOK:
		r.stats.fail("http-valid", "status %d", code)
	default:
		r.stats.record("http-valid", "200")
	}
}

// simpleRaw is a gRPC request for "simple" with raw contents.
func simpleRaw(id string, a, b []int32) *inference.ModelInferRequest {
	raw := func(v []int32) []byte {
		out := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
		}
		return out
	}
	shape := []int64{int64(len(a) / 16), 16}
	return &inference.ModelInferRequest{
		ModelName: "simple", Id: id,
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: shape},
			{Name: "INPUT1", Datatype: "INT32", Shape: shape},
		},
		RawInputContents: [][]byte{raw(a), raw(b)},
	}
}

func int32sOf(b []byte) []int32 {
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// checkRaw reports what is wrong with a gRPC answer of "simple".
func checkRaw(id string, a, b []int32, resp *inference.ModelInferResponse) string {
	if resp.GetId() != id || len(resp.GetRawOutputContents()) != 2 {
		return fmt.Sprintf("answer for id %q has id %q and %d outputs", id, resp.GetId(), len(resp.GetRawOutputContents()))
	}
	return checkSimple(a, b, int32sOf(resp.GetRawOutputContents()[0]), int32sOf(resp.GetRawOutputContents()[1]))
}

// grpcSimple sends one unary request for "simple" and checks a successful
// answer's rows.
func (r *soakRun) grpcSimple(ctx context.Context, class string, rows int) error {
	id, a, b := r.simpleValues(rows)
	resp, err := r.grpc.ModelInfer(ctx, simpleRaw(id, a, b))
	if err == nil {
		if msg := checkRaw(id, a, b, resp); msg != "" {
			r.stats.fail(class, "%s", msg)
		}
	}
	return err
}

func (r *soakRun) grpcValid(rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := r.grpcSimple(ctx, "grpc-valid", 1+rng.IntN(3)); err != nil {
		r.stats.fail("grpc-valid", "%v", err)
		return
	}
	r.stats.record("grpc-valid", "OK")
}

// grpcStream sends a few requests on one stream: each must be answered
// once, in order, with its own rows, and the stream must end cleanly.
func (r *soakRun) grpcStream(rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := r.grpc.ModelStreamInfer(ctx)
	if err != nil {
		r.stats.fail("grpc-stream", "open: %v", err)
		return
	}
	n := 2 + rng.IntN(4)
	type sent struct {
		id   string
		a, b []int32
	}
	var reqs []sent
	for range n {
		id, a, b := r.simpleValues(1)
		reqs = append(reqs, sent{id, a, b})
		if err := stream.Send(simpleRaw(id, a, b)); err != nil {
			r.stats.fail("grpc-stream", "send: %v", err)
			return
		}
	}
	if err := stream.CloseSend(); err != nil {
		r.stats.fail("grpc-stream", "close send: %v", err)
		return
	}
	for _, q := range reqs {
		resp, err := stream.Recv()
		if err != nil {
			r.stats.fail("grpc-stream", "answer for %s: %v", q.id, err)
			return
		}
		if resp.GetErrorMessage() != "" {
			r.stats.fail("grpc-stream", "request %s: %s", q.id, resp.GetErrorMessage())
			continue
		}
		if msg := checkRaw(q.id, q.a, q.b, resp.GetInferResponse()); msg != "" {
			r.stats.fail("grpc-stream", "%s", msg)
			continue
		}
		r.stats.record("grpc-stream", "OK")
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		r.stats.fail("grpc-stream", "after the last answer: %v, want the end of the stream", err)
	}
}

// httpClassifier asks the classifier, whose versions come and go: the
// answer is a probability row from some version, or 503 while none is
// ready.
func (r *soakRun) httpClassifier() {
	feat := make([]string, 64)
	for i := range feat {
		feat[i] = strconv.FormatFloat(float64(int(r.seq.Add(1))%97)/97, 'g', -1, 32)
	}
	body := `{"inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(feat, ",") + `]}]}`
	resp, err := r.http.Post(r.ts.http+"/v2/models/classifier/infer", "application/json", strings.NewReader(body))
	if err != nil {
		r.stats.fail("http-classifier", "%v", err)
		return
	}
	defer resp.Body.Close()
	var out struct {
		Version string `json:"model_version"`
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	switch resp.StatusCode {
	case http.StatusOK:
		total := 0.0
		if len(out.Outputs) == 1 && len(out.Outputs[0].Data) == 10 {
			for _, p := range out.Outputs[0].Data {
				total += p
			}
		}
		if math.Abs(total-1) > 1e-3 || out.Version == "" {
			r.stats.fail("http-classifier", "version %q answered %v", out.Version, out.Outputs)
			return
		}
		r.stats.record("http-classifier", "200")
	case http.StatusServiceUnavailable:
		r.stats.record("http-classifier", "503")
	default:
		r.stats.fail("http-classifier", "status %d: %s", resp.StatusCode, out.Error)
	}
}

// malformed sends requests the decoders or the model's contract refuse.
func (r *soakRun) malformed(rng *rand.Rand) {
	if rng.IntN(2) == 0 {
		bodies := []string{
			`{"inputs":[`,
			`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2]}]}`,
			strings.Replace(simpleJSON("m", 1, make([]int32, 16), make([]int32, 16), ""), "INT32", "FP32", 1),
			`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT8","data":[` + strings.Repeat("300,", 15) + `300]}]}`,
		}
		resp, err := r.http.Post(r.ts.http+"/v2/models/simple/infer", "application/json", strings.NewReader(bodies[rng.IntN(len(bodies))]))
		if err != nil {
			r.stats.fail("http-malformed", "%v", err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			r.stats.fail("http-malformed", "status %d, want 400", resp.StatusCode)
			return
		}
		r.stats.record("http-malformed", "400")
		return
	}
	req := simpleRaw("m", make([]int32, 16), make([]int32, 16))
	if rng.IntN(2) == 0 {
		req.Inputs[1].Datatype = "FP32"
	} else {
		req.RawInputContents[0] = req.RawInputContents[0][:10]
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := r.grpc.ModelInfer(ctx, req)
	if code := status.Code(err); code != codes.InvalidArgument {
		r.stats.fail("grpc-malformed", "%v, want INVALID_ARGUMENT", err)
		return
	}
	r.stats.record("grpc-malformed", "InvalidArgument")
}

// oversized sends requests over the body, message and element limits.
func (r *soakRun) oversized(rng *rand.Rand) {
	switch rng.IntN(3) {
	case 0:
		body := `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[` + strings.Repeat("1,", soakMaxBody/2) + `1]}]}`
		r.expectHTTP("http-oversized", body, http.StatusRequestEntityTooLarge)
	case 1:
		n := soakMaxElements + 16
		body := `{"inputs":[{"name":"INPUT0","shape":[` + strconv.Itoa(n/16) + `,16],"datatype":"INT32","data":[` + strings.Repeat("1,", n-1) + `1]}]}`
		r.expectHTTP("http-too-many-elements", body, http.StatusRequestEntityTooLarge)
	default:
		req := simpleRaw("big", make([]int32, 16), make([]int32, 16))
		req.RawInputContents[0] = make([]byte, soakMaxBody+1)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := r.grpc.ModelInfer(ctx, req)
		if code := status.Code(err); code != codes.ResourceExhausted {
			r.stats.fail("grpc-oversized", "%v, want RESOURCE_EXHAUSTED", err)
			return
		}
		r.stats.record("grpc-oversized", "ResourceExhausted")
	}
}

func (r *soakRun) expectHTTP(class, body string, want int) {
	resp, err := r.http.Post(r.ts.http+"/v2/models/simple/infer", "application/json", strings.NewReader(body))
	if err != nil {
		r.stats.fail(class, "%v", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		r.stats.fail(class, "status %d, want %d", resp.StatusCode, want)
		return
	}
	r.stats.record(class, strconv.Itoa(want))
}

// deadline sends requests whose deadline may pass: the answer is the
// right rows or a deadline error, nothing else.
func (r *soakRun) deadline(rng *rand.Rand) {
	if rng.IntN(2) == 0 {
		micros := 1 + rng.IntN(2000)
		code, err := r.postSimple(context.Background(), "http-deadline", 1, fmt.Sprintf(`"parameters":{"timeout":%d},`, micros))
		switch {
		case err != nil:
			r.stats.fail("http-deadline", "%v", err)
		case code == http.StatusOK || code == http.StatusGatewayTimeout:
			r.stats.record("http-deadline", strconv.Itoa(code))
		default:
			r.stats.fail("http-deadline", "status %d, want 200 or 504", code)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+rng.IntN(3000))*time.Microsecond)
	defer cancel()
	err := r.grpcSimple(ctx, "grpc-deadline", 1)
	switch code := status.Code(err); code {
	case codes.OK, codes.DeadlineExceeded:
		r.stats.record("grpc-deadline", code.String())
	default:
		r.stats.fail("grpc-deadline", "%v, want success or DEADLINE_EXCEEDED", err)
	}
}

// cancel gives up on requests at a random moment.
func (r *soakRun) cancel(rng *rand.Rand) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
	defer timer.Stop()
	defer cancel()
	if rng.IntN(2) == 0 {
		code, err := r.postSimple(ctx, "http-cancel", 1, "")
		switch {
		case err != nil && errors.Is(err, context.Canceled):
			r.stats.record("http-cancel", "client gave up")
		case err != nil:
			r.stats.fail("http-cancel", "%v", err)
		case code == http.StatusOK:
			r.stats.record("http-cancel", "200")
		default:
			r.stats.fail("http-cancel", "status %d", code)
		}
		return
	}
	err := r.grpcSimple(ctx, "grpc-cancel", 1)
	switch code := status.Code(err); code {
	case codes.OK, codes.Canceled:
		r.stats.record("grpc-cancel", code.String())
	default:
		r.stats.fail("grpc-cancel", "%v, want success or CANCELLED", err)
	}
}

// cutConn closes itself once it has written budget bytes: a client whose
// connection drops in the middle of a request.
type cutConn struct {
	net.Conn
	budget int
}

func (c *cutConn) Write(p []byte) (int, error) {
	if len(p) >= c.budget {
		n, _ := c.Conn.Write(p[:c.budget])
		c.Conn.Close()
		return n, net.ErrClosed
	}
	c.budget -= len(p)
	return c.Conn.Write(p)
}

// cut writes part of a request and drops the connection; the server must
// shrug it off.
func (r *soakRun) cut(rng *rand.Rand) {
	if rng.IntN(2) == 0 {
		_, a, b := r.simpleValues(1)
		body := simpleJSON("cut", 1, a, b, "")
		msg := fmt.Sprintf("POST /v2/models/simple/infer HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		c, err := net.Dial("tcp", r.ts.a.httpLn.Addr().String())
		if err != nil {
			r.stats.fail("http-cut", "%v", err)
			return
		}
		_, _ = io.WriteString(c, msg[:1+rng.IntN(len(msg)-1)])
		c.Close()
		r.stats.record("http-cut", "cut")
		return
	}
	budget := 1 + rng.IntN(600)
	conn, err := grpc.NewClient(r.ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &cutConn{Conn: c, budget: budget}, nil
		}))
	if err != nil {
		r.stats.fail("grpc-cut", "%v", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	id, a, b := r.simpleValues(1)
	resp, err := inference.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, simpleRaw(id, a, b))
	if err == nil {
		if msg := checkRaw(id, a, b, resp); msg != "" {
			r.stats.fail("grpc-cut", "%s", msg)
			return
		}
	}
	r.stats.record("grpc-cut", status.Code(err).String())
}

// runChaos changes the repository and the traffic split until ctx ends:
// classifier versions are added and removed, a model file is corrupted
// and restored, the split is replaced.
func (r *soakRun) runChaos(ctx context.Context) {
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	versions := []int{1, 2}
	next := 3
	corrupted := 0
	for {
		select {
		case <-ctx.Done():
			if corrupted != 0 {
				r.restore(corrupted)
			}
			return
		case <-time.After(time.Duration(150+rng.IntN(250)) * time.Millisecond):
		}
		action := rng.IntN(4)
		if r.chaos["swap"] == 0 {
			action = 0 // a swap at once, so even a short soak has one
		}
		switch {
		case action == 0 && len(versions) < 4:
			r.addVersion(next)
			versions = append(versions, next)
			next++
			r.chaos["swap"]++
		case action == 1 && len(versions) > 2 && versions[0] != corrupted:
			r.removeVersion(versions[0])
			versions = versions[1:]
			r.chaos["swap"]++
		case action == 2:
			if corrupted != 0 {
				r.restore(corrupted)
				corrupted = 0
				r.chaos["restore"]++
			} else {
				corrupted = versions[rng.IntN(len(versions))]
				r.put(filepath.Join("classifier", strconv.Itoa(corrupted), "model.onnx"), []byte("this is not an ONNX model"))
				r.chaos["corrupt"]++
			}
		default:
			split := map[string]int{}
			for _, v := range versions {
				split[strconv.Itoa(v)] = 1 + rng.IntN(9)
			}
			body, _ := json.Marshal(map[string]any{"split": split})
			req, _ := http.NewRequest(http.MethodPut, r.ts.http+"/v2/models/classifier/traffic", bytes.NewReader(body))
			resp, err := r.http.Do(req)
			if err != nil {
				r.stats.fail("traffic-put", "%v", err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// A version just added may not be known yet: 400 names it.
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadRequest {
				r.stats.fail("traffic-put", "status %d", resp.StatusCode)
				continue
			}
			r.stats.record("traffic-put", strconv.Itoa(resp.StatusCode))
			r.chaos["traffic"]++
		}
	}
}

// put writes a repository file by rename, the way operators are told to.
func (r *soakRun) put(rel string, data []byte) {
	tmp := filepath.Join(r.repo, ".soak-"+strconv.FormatInt(r.seq.Add(1), 10))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		r.t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(r.repo, rel)); err != nil {
		r.t.Error(err)
	}
}

func (r *soakRun) addVersion(v int) {
	staging := filepath.Join(r.repo, ".soak-version-"+strconv.Itoa(v))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		r.t.Error(err)
		return
	}
	if err := os.WriteFile(filepath.Join(staging, "model.onnx"), r.models[v%2], 0o644); err != nil {
		r.t.Error(err)
		return
	}
	if err := os.Rename(staging, filepath.Join(r.repo, "classifier", strconv.Itoa(v))); err != nil {
		r.t.Error(err)
	}
}

func (r *soakRun) removeVersion(v int) {
	trash := filepath.Join(r.repo, ".soak-trash-"+strconv.Itoa(v))
	if err := os.Rename(filepath.Join(r.repo, "classifier", strconv.Itoa(v)), trash); err != nil {
		r.t.Error(err)
		return
	}
	if err := os.RemoveAll(trash); err != nil {
		r.t.Error(err)
	}
}

func (r *soakRun) restore(v int) {
	r.put(filepath.Join("classifier", strconv.Itoa(v), "model.onnx"), r.models[v%2])
}

// settle waits until every version on disk is READY, nothing is loading
// or unloading, and the live ONNX Runtime sessions are exactly the ready
// versions (each model has one instance), steadily. It returns the ready
// versions.
func (r *soakRun) settle() int {
	t := r.t
	deadline := time.Now().Add(soakSettle)
	steady, last := 0, ""
	for {
		var idx []map[string]string
		do(t, "POST", r.ts.http+"/v2/repository/index", "", &idx)
		ready, busy := 0, 0
		for _, e := range idx {
			switch e["state"] {
			case "READY":
				ready++
			case "LOADING", "UNLOADING":
				busy++
			}
		}
		onDisk := r.versionsOnDisk()
		sessions := runtime.LiveSessions()
		state := fmt.Sprint(idx, onDisk, sessions)
		if busy == 0 && int64(ready) == sessions && ready == onDisk {
			if state == last {
				steady++
			} else {
				steady = 0
			}
			if steady >= 3 {
				return ready
			}
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("the repository did not settle in %v: %d sessions, %d versions on disk, index %v", soakSettle, sessions, onDisk, idx)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// versionsOnDisk counts the version folders of every model.
func (r *soakRun) versionsOnDisk() int {
	n := 0
	models, _ := os.ReadDir(r.repo)
	for _, m := range models {
		if !m.IsDir() || strings.HasPrefix(m.Name(), ".") {
			continue
		}
		vs, _ := os.ReadDir(filepath.Join(r.repo, m.Name()))
		for _, v := range vs {
			if _, err := strconv.Atoi(v.Name()); err == nil && v.IsDir() {
				n++
			}
		}
	}
	return n
}

// checkStillServing makes sure the server answers correctly after the
// storm.
func (r *soakRun) checkStillServing() {
	before := r.stats.failed
	r.httpValid(rand.New(rand.NewPCG(1, 2)))
	r.grpcValid(rand.New(rand.NewPCG(3, 4)))
	if r.stats.failed != before {
		r.t.Error("the server no longer answers correctly after the soak")
	}
}

// waitGoroutines waits up to soakSettle for the goroutine count to drop
// to limit and returns the last count: idle connections and worker pools
// wind down on their own timers.
func waitGoroutines(limit int) int {
	deadline := time.Now().Add(soakSettle)
	for {
		n := goruntime.NumGoroutine()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rssBytes reads a memory figure (VmRSS, VmHWM) of this process.
func rssBytes(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Logf("no /proc/self/status: %v", err)
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// goHeap is the Go heap in use after a collection: what RSS growth owes to
// Go, the rest being ONNX Runtime's and the allocator's.
func goHeap() int64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// soakReport is what bench/SOAK.md records besides the counters.
type soakReport struct {
	duration                     time.Duration
	ready                        int
	rssBefore, rssAfter, rssPeak int64
	heapBefore, heapAfter        int64
	goroutinesBefore             int
	goroutinesAfter              int
	sessionsBefore               int64
	sessionsAfterShutdown        int64
	panics                       int
	logged                       map[string]int // warnings and errors by level and message
}

func (r *soakRun) writeReport(rep soakReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Chaos soak\n\nWritten by `make soak` (`TestSoak` in cmd/serve/soak_test.go) on %s, %s/%s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), goruntime.GOOS, goruntime.GOARCH, goruntime.NumCPU(), raceNote())
	fmt.Fprintf(&b, "%d load workers over HTTP and gRPC on loopback for %v; in the background classifier versions were hot-swapped, a model file corrupted and restored, and the traffic split replaced.\n\n",
		soakWorkers, rep.duration.Round(time.Second))
	b.WriteString("## Requests by class and outcome\n\n| class | outcome | count |\n|---|---|---:|\n")
	r.stats.mu.Lock()
	classes := make([]string, 0, len(r.stats.outcomes))
	for c := range r.stats.outcomes {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var total int64
	for _, c := range classes {
		outs := r.stats.outcomes[c]
		keys := make([]string, 0, len(outs))
		for k := range outs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", c, k, outs[k])
			total += outs[k]
		}
	}
	failed, failures := r.stats.failed, slices.Clone(r.stats.failures)
	r.stats.mu.Unlock()
	fmt.Fprintf(&b, "\n%d requests, %.0f/s; %d with an unexpected outcome.\n\n", total, float64(total)/rep.duration.Seconds(), failed)
	for _, f := range failures {
		fmt.Fprintf(&b, "- %s\n", f)
	}
	b.WriteString("## Chaos\n\n| action | count |\n|---|---:|\n")
	for _, k := range []string{"swap", "corrupt", "restore", "traffic"} {
		fmt.Fprintf(&b, "| %s | %d |\n", k, r.chaos[k])
	}
	fmt.Fprintf(&b, "\n## Resources\n\n| | before | after |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| RSS | %s | %s (peak %s) |\n", mib(rep.rssBefore), mib(rep.rssAfter), mib(rep.rssPeak))
	fmt.Fprintf(&b, "| Go heap in use | %s | %s |\n", mib(rep.heapBefore), mib(rep.heapAfter))
	fmt.Fprintf(&b, "| goroutines | %d | %d |\n", rep.goroutinesBefore, rep.goroutinesAfter)
	fmt.Fprintf(&b, "| ONNX Runtime sessions | %d | %d, the ready versions; %d after shutdown |\n", rep.sessionsBefore, rep.ready, rep.sessionsAfterShutdown)
	fmt.Fprintf(&b, "\nRSS is the test process, server and clients together, measured when the load has stopped and the repository settled. Panics logged: %d.\n", rep.panics)
	b.WriteString("\n## Warnings and errors logged\n\n| level: message | count |\n|---|---:|\n")
	msgs := make([]string, 0, len(rep.logged))
	for m := range rep.logged {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return rep.logged[msgs[i]] > rep.logged[msgs[j]] })
	for _, m := range msgs {
		fmt.Fprintf(&b, "| %s | %d |\n", strings.ReplaceAll(m, "|", "/"), rep.logged[m])
	}
	path := filepath.Join("..", "..", "bench", "SOAK.md")
	if old, err := os.ReadFile(path); err == nil {
		// The sections of `make attack` (attack_test.go) stay.
		if i := strings.Index(string(old), "\n"+attackHeading+"\n"); i >= 0 {
			b.WriteString(string(old[i:]))
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		r.t.Errorf("write %s: %v", path, err)
	}
}
