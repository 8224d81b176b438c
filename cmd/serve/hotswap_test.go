package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onnxserve/onnxserve/internal/onnxgen"
	"github.com/onnxserve/onnxserve/internal/runtime"
	inference "github.com/onnxserve/onnxserve/proto"
)

// swapRepo is a repository holding one model, "swap", whose versions add a
// known constant, so every answer tells which instance computed it.
type swapRepo struct {
	t    *testing.T
	root string
}

func newSwapRepo(t *testing.T) *swapRepo {
	r := &swapRepo{t: t, root: t.TempDir()}
	r.writeConfig("max_batch_size: 8\ndynamic_batching:\n  max_queue_delay: 200us\nversion_policy:\n  latest: 1\n")
	r.writeVersion(1, onnxgen.AddConst(1))
	return r
}

// put writes a file by rename, the way an operator is told to, so the
// server never sees it half written.
func (r *swapRepo) put(rel string, data []byte) {
	r.t.Helper()
	path := filepath.Join(r.root, "swap", rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		r.t.Fatal(err)
	}
	tmp := filepath.Join(r.root, ".tmp-"+strings.ReplaceAll(rel, "/", "-"))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		r.t.Fatal(err)
	}
}

func (r *swapRepo) writeConfig(s string)             { r.put("config.yaml", []byte(s)) }
func (r *swapRepo) writeVersion(v int, model []byte) { r.put(fmt.Sprintf("%d/model.onnx", v), model) }

// allowed lists, per version label, every delta an instance of it has
// computed; an answer outside it is another request's or version's.
type allowed struct {
	mu sync.Mutex
	m  map[string]map[float32]bool
}

func (a *allowed) add(version string, delta float32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[version] == nil {
		a.m[version] = map[float32]bool{}
	}
	a.m[version][delta] = true
}

func (a *allowed) ok(version string, delta float32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[version][delta]
}

// TestHotSwapUnderLoad keeps HTTP and gRPC clients busy while versions are
// added, replaced, corrupted, restored and removed and config.yaml is broken
// and fixed: not one request may fail, and every answer must come from an
// instance that the policy allowed at some point.
func TestHotSwapUnderLoad(t *testing.T) {
	repo := newSwapRepo(t)
	ts := startServer(t, repo.root)
	conn, err := grpc.NewClient(ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inference.NewGRPCInferenceServiceClient(conn)

	ok := &allowed{m: map[string]map[float32]bool{}}
	ok.add("1", 1)
	var served sync.Map // version label → *atomic.Int64
	count := func(v string) int64 {
		c, _ := served.LoadOrStore(v, new(atomic.Int64))
		return c.(*atomic.Int64).Load()
	}
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	check := func(worker, i int, version string, in, out []float32) {
		if len(out) != len(in) {
			fail("worker %d request %d: %d outputs for %d inputs", worker, i, len(out), len(in))
			return
		}
		d := out[0] - in[0]
		for j := range in {
			if out[j]-in[j] != d {
				fail("worker %d request %d: element %d off by %v, element 0 by %v", worker, i, j, out[j]-in[j], d)
				return
			}
		}
		if !ok.ok(version, d) {
			fail("worker %d request %d: version %s answered with delta %v", worker, i, version, d)
		}
		c, _ := served.LoadOrStore(version, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				in := make([]float32, 4)
				for j := range in {
					in[j] = float32(w*100000 + i*4 + j)
				}
				if w%2 == 0 {
					version, out, err := inferHTTP(ts, in)
					if err != nil {
						fail("http worker %d request %d: %v", w, i, err)
						continue
					}
					check(w, i, version, in, out)
					continue
				}
				version, out, err := inferGRPC(ctx, client, in)
				if err != nil {
					if ctx.Err() == nil {
						fail("grpc worker %d request %d: %v", w, i, err)
					}
					continue
				}
				check(w, i, version, in, out)
			}
		}()
	}

	// waitServed waits until version v has answered more requests than it
	// had when called, proof that the step took effect under load.
	waitServed := func(v string, step string) {
		t.Helper()
		before := count(v)
		deadline := time.Now().Add(testTimeout)
		for count(v) < before+20 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: version %s never served (index %s)", step, v, indexString(t, ts))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitServed("1", "start")
	ok.add("2", 2)
	repo.writeVersion(2, onnxgen.AddConst(2))
	waitServed("2", "add version 2")

	ok.add("2", 20)
	repo.writeVersion(2, onnxgen.AddConst(20)) // replace its weights
	waitDelta(t, ts, "2", 20)

	repo.writeVersion(2, []byte("this is not an ONNX model"))
	waitReason(t, ts, "2", "reload failed")
	waitServed("2", "corrupt version 2") // the previous instance still serves

	ok.add("2", 21)
	repo.writeVersion(2, onnxgen.AddConst(21))
	waitDelta(t, ts, "2", 21)

	repo.writeConfig("max_batch_size: [oops\n")
	waitServed("2", "broken config.yaml")
	repo.writeConfig("max_batch_size: 8\ndynamic_batching:\n  max_queue_delay: 300us\nversion_policy:\n  latest: 1\n")
	waitServed("2", "fixed config.yaml")

	ok.add("3", 3)
	repo.writeVersion(3, onnxgen.AddConst(3))
	waitServed("3", "add version 3")

	if err := os.RemoveAll(filepath.Join(repo.root, "swap", "3")); err != nil {
		t.Fatal(err)
	}
	waitServed("2", "remove version 3")

	stop()
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d requests failed or were answered wrongly during the swaps", n)
	}
	// Every replaced or removed instance is released: one session remains.
	deadline := time.Now().Add(testTimeout)
	for runtime.LiveSessions() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d ONNX Runtime sessions live, want 1 (index %s)", runtime.LiveSessions(), indexString(t, ts))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpClient keeps enough idle connections for the load workers, so the
// test measures the server, not connection churn.
var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: testTimeout}

func inferHTTP(ts *testServer, in []float32) (string, []float32, error) {
	vals := make([]string, len(in))
	for i, v := range in {
		vals[i] = fmt.Sprint(v)
	}
	body := `{"inputs":[{"name":"INPUT","shape":[1,4],"datatype":"FP32","data":[` + strings.Join(vals, ",") + `]}]}`
	resp, err := httpClient.Post(ts.http+"/v2/models/swap/infer", "application/json", strings.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var r struct {
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", nil, err
	}
	if resp.StatusCode != 200 || len(r.Outputs) != 1 {
		return "", nil, fmt.Errorf("status %d: %s", resp.StatusCode, r.Error)
	}
	return r.ModelVersion, r.Outputs[0].Data, nil
}

func inferGRPC(ctx context.Context, c inference.GRPCInferenceServiceClient, in []float32) (string, []float32, error) {
	raw := make([]byte, 4*len(in))
	for i, v := range in {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{
		ModelName:        "swap",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "FP32", Shape: []int64{1, 4}}},
		RawInputContents: [][]byte{raw},
	})
	if err != nil {
		return "", nil, err
	}
	if len(resp.RawOutputContents) != 1 {
		return "", nil, fmt.Errorf("%d raw outputs", len(resp.RawOutputContents))
	}
	b := resp.RawOutputContents[0]
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return resp.ModelVersion, out, nil
}

// waitDelta waits until version v answers with delta d.
func waitDelta(t *testing.T, ts *testServer, v string, d float32) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		version, out, err := inferHTTP(ts, []float32{0, 0, 0, 0})
		if err == nil && version == v && out[0] == d {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("version %s never answered with delta %v (last: v%s %v %v)", v, d, version, out, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReason waits until the index shows version v with a reason
// containing want.
func waitReason(t *testing.T, ts *testServer, v, want string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(indexString(t, ts), want) {
		if time.Now().After(deadline) {
			t.Fatalf("index never showed %q for version %s: %s", want, v, indexString(t, ts))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func indexString(t *testing.T, ts *testServer) string {
	t.Helper()
	var idx []map[string]string
	do(t, "POST", ts.http+"/v2/repository/index", "", &idx)
	b, _ := json.Marshal(idx)
	return string(b)
}
