package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// stringPair is one simple_string request: INPUT0 and INPUT1 as decimal
// strings, with "x" in INPUT0's element 5 when poisoned.
type stringPair struct {
	a, b     []int
	poisoned bool
}

func newStringPair(seed int, poisoned bool) stringPair {
	return stringPair{a: seq(seed, 16), b: seq(3*seed, 16), poisoned: poisoned}
}

func (p stringPair) strings(v []int, poison bool) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = strconv.Itoa(x)
	}
	if poison {
		out[5] = "x"
	}
	return out
}

func (p stringPair) httpBody() string {
	a, _ := json.Marshal(p.strings(p.a, p.poisoned))
	b, _ := json.Marshal(p.strings(p.b, false))
	return fmt.Sprintf(`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"BYTES","data":%s},{"name":"INPUT1","shape":[1,16],"datatype":"BYTES","data":%s}]}`, a, b)
}

func (p stringPair) grpcRequest() *inference.ModelInferRequest {
	in := func(name string, v []string) *inference.ModelInferRequest_InferInputTensor {
		c := &inference.InferTensorContents{}
		for _, s := range v {
			c.BytesContents = append(c.BytesContents, []byte(s))
		}
		return &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: "BYTES", Shape: []int64{1, 16}, Contents: c}
	}
	return &inference.ModelInferRequest{ModelName: "simple_string",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{in("INPUT0", p.strings(p.a, p.poisoned)), in("INPUT1", p.strings(p.b, false))}}
}

// check compares sums and differences with the exact answer.
func (p stringPair) check(sum, diff []string) error {
	if len(sum) != 16 || len(diff) != 16 {
		return fmt.Errorf("got %d sums and %d differences, want 16 each", len(sum), len(diff))
	}
	for i := range p.a {
		if sum[i] != strconv.Itoa(p.a[i]+p.b[i]) || diff[i] != strconv.Itoa(p.a[i]-p.b[i]) {
			return fmt.Errorf("element %d: %s, %s; want %d, %d", i, sum[i], diff[i], p.a[i]+p.b[i], p.a[i]-p.b[i])
		}
	}
	return nil
}

// bytesElements splits a raw BYTES tensor (4-byte little-endian lengths).
func bytesElements(raw []byte) []string {
	var out []string
	for len(raw) >= 4 {
		n := binary.LittleEndian.Uint32(raw)
		if uint32(len(raw)-4) < n {
			return nil
		}
		out = append(out, string(raw[4:4+n]))
		raw = raw[4+n:]
	}
	return out
}

// TestBatchIsolationEndToEnd drives both front ends at once with clients
// mixing valid simple_string requests and poisoned ones (a non-number,
// which ONNX Runtime's cast fails on): every valid request gets its exact
// answer although it shared batches with poisoned ones, every poisoned one
// is the client's fault and names the model, batches of several requests
// did run, and the server stays ready.
func TestBatchIsolationEndToEnd(t *testing.T) {
	ts := startServer(t, copyRepo(t))
	// One valid request first: a version that has never answered cannot
	// tell a bad input from a broken model.
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple_string/infer", newStringPair(1, false).httpBody(), &r); code != 200 {
		t.Fatalf("first request: %d %s", code, r.Error)
	}
	client := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	httpClient := &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	const (
		clients  = 10
		requests = 60
		wantMsg  = `model "simple_string" version 1: the model rejected this input: `
	)
	var valid, poisoned atomic.Int64
	var sampleMsg atomic.Value
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			viaGRPC := c%2 == 1
			for i := range requests {
				p := newStringPair(c*1000+i, (c+i)%3 == 0)
				var sum, diff []string
				var code int
				var msg string
				if viaGRPC {
					ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
					resp, err := client.ModelInfer(ctx, p.grpcRequest())
					cancel()
					if err != nil {
						st, _ := status.FromError(err)
						code, msg = int(st.Code()), st.Message()
					} else if len(resp.RawOutputContents) == 2 {
						sum, diff = bytesElements(resp.RawOutputContents[0]), bytesElements(resp.RawOutputContents[1])
					}
				} else {
					resp, err := httpClient.Post(ts.http+"/v2/models/simple_string/infer", "application/json", strings.NewReader(p.httpBody()))
					if err != nil {
						t.Errorf("client %d: %v", c, err)
						return
					}
					var r inferResponse
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err := json.Unmarshal(body, &r); err != nil {
						t.Errorf("client %d: undecodable answer %q", c, body)
						return
					}
					code, msg = resp.StatusCode, r.Error
					if code == 200 {
						code = 0
						if len(r.Outputs) == 2 {
							_ = json.Unmarshal(r.Outputs[0].Data, &sum)
							_ = json.Unmarshal(r.Outputs[1].Data, &diff)
						}
					}
				}
				if p.poisoned {
					poisoned.Add(1)
					wantCode := http.StatusBadRequest
					if viaGRPC {
						wantCode = int(codes.InvalidArgument)
					}
					sampleMsg.CompareAndSwap(nil, msg)
					if code != wantCode || !strings.HasPrefix(msg, wantMsg) {
						t.Errorf("client %d poisoned request %d: code %d %q, want %d %q…", c, i, code, msg, wantCode, wantMsg)
					}
					continue
				}
				valid.Add(1)
				if code != 0 {
					t.Errorf("client %d valid request %d failed: %d %s", c, i, code, msg)
					continue
				}
				if err := p.check(sum, diff); err != nil {
					t.Errorf("client %d valid request %d: %v", c, i, err)
				}
			}
		}()
	}
	wg.Wait()
	if do(t, "GET", ts.http+"/v2/health/ready", "", nil) != 200 {
		t.Error("server not ready after the poisoned requests")
	}
	fams := scrape(t, ts)
	labels := map[string]string{"model": "simple_string", "version": "1"}
	var batches, single uint64
	for _, m := range series(fams, "onnxserve_batch_size", labels) {
		batches = m.Histogram.GetSampleCount()
		for _, b := range m.Histogram.Bucket {
			if b.GetUpperBound() == 1 {
				single = b.GetCumulativeCount()
			}
		}
	}
	if batches <= single {
		t.Errorf("no batch of more than one row ran (%d batches, %d of one row)", batches, single)
	}
	isolations := counterValue(t, fams, "onnxserve_batch_isolations_total", labels)
	if isolations < 1 {
		t.Errorf("onnxserve_batch_isolations_total = %v, want at least 1", isolations)
	}
	if n := counterValue(t, fams, "onnxserve_model_rejections_total", labels); n != float64(poisoned.Load()) {
		t.Errorf("onnxserve_model_rejections_total = %v, want %d", n, poisoned.Load())
	}
	t.Logf("%d valid and %d poisoned requests; %d batches, %d of them of one row; %v isolations; a poisoned request's answer: %q",
		valid.Load(), poisoned.Load(), batches, single, isolations, sampleMsg.Load())
}

// TestNaNIsNotAFailure: ONNX Runtime computes on NaN without failing, so
// a classifier row of NaN, batched with valid rows, fails nothing and is
// not isolated.
func TestNaNIsNotAFailure(t *testing.T) {
	ts := startServer(t, copyRepo(t))
	client := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				feat := make([]float32, 64)
				nan := (c+i)%4 == 0
				for j := range feat {
					feat[j] = float32((j*7+c+i)%13) / 13
					if nan {
						feat[j] = float32(math.NaN())
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				resp, err := client.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "classifier", Inputs: []*inference.ModelInferRequest_InferInputTensor{{
					Name: "INPUT", Datatype: "FP32", Shape: []int64{1, 64}, Contents: &inference.InferTensorContents{Fp32Contents: feat}}}})
				cancel()
				if err != nil {
					t.Errorf("client %d request %d (NaN %v): %v", c, i, nan, err)
					continue
				}
				raw := resp.RawOutputContents[0]
				if len(raw) != 40 {
					t.Errorf("output of %d bytes", len(raw))
					continue
				}
				sum := 0.0
				for k := 0; k < 40; k += 4 {
					sum += float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[k:])))
				}
				if nan != math.IsNaN(sum) || (!nan && math.Abs(sum-1) > 1e-4) {
					t.Errorf("client %d request %d (NaN %v): probabilities sum to %v", c, i, nan, sum)
				}
			}
		}()
	}
	wg.Wait()
	fams := scrape(t, ts)
	if n := counterValue(t, fams, "onnxserve_batch_isolations_total", map[string]string{"model": "classifier"}); n != 0 {
		t.Errorf("classifier: %v isolations, want 0", n)
	}
	if n := counterValue(t, fams, "onnxserve_batch_size", map[string]string{"model": "classifier"}); n == 0 {
		t.Error("classifier: no batch ran")
	}
}

// TestRepositorySettleFlag: --repository-settle reaches the watcher: a new
// version file is not loaded before it has been stable that long.
func TestRepositorySettleFlag(t *testing.T) {
	repo := copyRepo(t)
	const settle = 3 * time.Second
	ts := startServer(t, repo, "--repository-settle", settle.String())
	model, err := os.ReadFile(filepath.Join(repo, "classifier", "1", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(repo, ".new-version")
	if err := os.MkdirAll(filepath.Join(tmp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "model.onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	if err := os.Rename(tmp, filepath.Join(repo, "classifier", "3")); err != nil {
		t.Fatal(err)
	}
	const v3 = `"name":"classifier","state":"READY","version":"3"`
	// Must not happen: version 3 loading well inside the settle interval
	// (the old default of 250ms would load it at once).
	for time.Since(written) < settle/2 {
		if strings.Contains(indexString(t, ts), v3) {
			t.Fatalf("version 3 loaded %v after it was written, before --repository-settle %v", time.Since(written), settle)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitReason(t, ts, "3", v3)
	if took := time.Since(written); took < settle {
		t.Errorf("version 3 loaded after %v, before --repository-settle %v", took, settle)
	}
}

// blockedModel is a serving.Model whose runs wait for release.
type blockedModel struct {
	started chan struct{} // one value per run, if there is room
	release chan struct{}
	open    *atomic.Int64
}

func (m *blockedModel) Inputs() []tensor.Spec {
	return []tensor.Spec{{Name: "X", DataType: tensor.FP32, Shape: []int64{-1}}}
}
func (m *blockedModel) Outputs() []tensor.Spec { return m.Inputs() }
func (m *blockedModel) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	select {
	case m.started <- struct{}{}:
	default:
	}
	<-m.release
	return []tensor.Tensor{{Name: "X", DataType: tensor.FP32, Shape: in[0].Shape, Data: append([]byte(nil), in[0].Data...)}}, nil
}
func (m *blockedModel) Close() error { m.open.Add(-1); return nil }

type blockedLoader struct{ m *blockedModel }

func (l blockedLoader) Load(context.Context, string, repository.Instances) (serving.Model, error) {
	l.m.open.Add(1)
	return l.m, nil
}

// TestShutdownKeepsORTWhileSessionsOpen: when the drain times out with a
// session still running, the ONNX Runtime environment is not destroyed
// under it; once every session is closed it is.
func TestShutdownKeepsORTWhileSessionsOpen(t *testing.T) {
	m := &blockedModel{started: make(chan struct{}, 1), release: make(chan struct{}), open: new(atomic.Int64)}
	srv := serving.New(blockedLoader{m}, serving.Config{DrainTimeout: testTimeout}, zap.NewNop(), nil, nil)
	cfg := repository.DefaultConfig()
	cfg.MaxBatchSize = 4
	srv.Apply(context.Background(), []serving.Desired{{Name: "m", Config: cfg, ConfigHash: "h",
		Versions: []serving.DesiredVersion{{Number: 1, Path: "p", Fingerprint: "f"}}}})
	var torndown atomic.Int64
	a := &app{log: zap.NewNop(), srv: srv, ortShutdown: func() error {
		if m.open.Load() != 0 {
			t.Error("ONNX Runtime torn down with a session open")
		}
		torndown.Add(1)
		return nil
	}}
	answered := make(chan error, 1)
	go func() {
		_, err := srv.Infer(context.Background(), &serving.Request{Model: "m",
			Inputs: []tensor.Tensor{{Name: "X", DataType: tensor.FP32, Shape: []int64{1}, Data: make([]byte, 4)}}})
		answered <- err
	}()
	select {
	case <-m.started:
	case <-time.After(testTimeout):
		t.Fatal("the request never reached the model")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.closeServing(ctx); !errors.Is(err, serving.ErrSessionsOpen) {
		t.Errorf("closeServing with a session running: %v, want ErrSessionsOpen", err)
	}
	if torndown.Load() != 0 {
		t.Error("ONNX Runtime torn down although the drain timed out")
	}
	close(m.release)
	if err := <-answered; err != nil {
		t.Errorf("the running request: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), testTimeout)
	defer cancel2()
	if err := a.closeServing(ctx2); err != nil {
		t.Fatal(err)
	}
	if torndown.Load() != 1 {
		t.Errorf("ONNX Runtime torn down %d times once every session closed, want 1", torndown.Load())
	}
}
