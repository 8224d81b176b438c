package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// vadChunk is the samples of one Silero VAD chunk at 16 kHz.
const vadChunk = 512

// sileroModel returns Silero VAD v5 as `make vad` caches it, skipping (or,
// under `make test`, failing) when it is missing.
func sileroModel(t *testing.T) []byte {
	t.Helper()
	path := os.Getenv("ONNXSERVE_SILERO_VAD")
	if path == "" {
		path = filepath.Join("..", "..", ".cache", "models", "silero_vad", "silero_vad.onnx")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_ORT") == "1" {
			t.Fatalf("Silero VAD required (make vad): %v", err)
		}
		t.Skipf("no Silero VAD model (make vad): %v", err)
	}
	return b
}

const vadConfig = `max_batch_size: 16
dynamic_batching: {max_queue_delay: 2ms}
sequence_batching:
  max_sequence_idle: %s
  max_sequences: %d
  state:
    - {input: state, output: stateN, batch_axis: 1, initial: zeros}
`

// vadAudio is a sequence's deterministic audio: noise with a tone that
// comes and goes, so the speech probability moves.
func vadAudio(seed uint64, chunks int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([][]float32, chunks)
	for c := range out {
		out[c] = make([]float32, vadChunk)
		amp := float32(0.4 * math.Abs(math.Sin(float64(c)/7+float64(seed))))
		for i := range out[c] {
			n := c*vadChunk + i
			out[c][i] = amp*float32(math.Sin(2*math.Pi*220*float64(n)/16000)) + 0.05*(r.Float32()-0.5)
		}
	}
	return out
}

// vadReference runs each chunk of audio through raw ONNX Runtime alone,
// carrying the state itself, and returns the speech probabilities.
func vadReference(t *testing.T, sess *runtime.Session, audio [][]float32) []float32 {
	t.Helper()
	state := tensor.Tensor{Name: "state", DataType: tensor.FP32, Shape: []int64{2, 1, 128}, Data: make([]byte, 2*128*4)}
	sr := tensor.Tensor{Name: "sr", DataType: tensor.Int64, Shape: []int64{}, Data: binary.LittleEndian.AppendUint64(nil, 16000)}
	probs := make([]float32, len(audio))
	for c, chunk := range audio {
		in := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: []int64{1, vadChunk}, Data: float32LE(chunk...)}
		out, err := sess.Run(context.Background(), []tensor.Tensor{in, state, sr})
		if err != nil {
			t.Fatal(err)
		}
		probs[c] = fromFloat32LE(out[0].Data)[0]
		state = tensor.Tensor{Name: "state", DataType: tensor.FP32, Shape: out[1].Shape, Data: out[1].Data}
	}
	return probs
}

func vadJSON(id string, chunk []float32, start, end bool, srShape string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"parameters":{"sequence_id":%s,"sequence_start":%t,"sequence_end":%t},"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":[`, id, start, end, vadChunk)
	for i, f := range chunk {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(f), 'g', -1, 32))
	}
	fmt.Fprintf(&b, `]},{"name":"sr","shape":%s,"datatype":"INT64","data":[16000]}]}`, srShape)
	return b.String()
}

// vadHTTP sends one chunk and returns the version that served it and the
// speech probability, or the error message with the status.
func vadHTTP(ts *testServer, model, id string, chunk []float32, start, end bool) (string, float32, error) {
	resp, err := http.Post(ts.http+"/v2/models/"+model+"/infer", "application/json", strings.NewReader(vadJSON(id, chunk, start, end, "[]")))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Name string    `json:"name"`
			Data []float32 `json:"data"`
		} `json:"outputs"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", 0, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%d %s", resp.StatusCode, r.Error)
	}
	if len(r.Outputs) != 1 || r.Outputs[0].Name != "output" || len(r.Outputs[0].Data) != 1 {
		return "", 0, fmt.Errorf("outputs %s: want only the speech probability, not the state", b)
	}
	return r.ModelVersion, r.Outputs[0].Data[0], nil
}

func vadGRPCRequest(id int64, chunk []float32, start, end bool, srShape []int64) *inference.ModelInferRequest {
	return &inference.ModelInferRequest{
		ModelName: "vad",
		Parameters: map[string]*inference.InferParameter{
			"sequence_id":    {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: id}},
			"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: start}},
			"sequence_end":   {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: end}},
		},
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{1, vadChunk}},
			{Name: "sr", Datatype: "INT64", Shape: srShape},
		},
		RawInputContents: [][]byte{float32LE(chunk...), binary.LittleEndian.AppendUint64(nil, 16000)},
	}
}

// scrapeValue returns the sum of the samples of a metric whose line starts
// with prefix, from the metrics port.
func scrapeValue(t *testing.T, ts *testServer, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.a.metricsLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// Silero VAD v5 with sequence_batching: 16 sequences of 100 chunks each,
// half on gRPC streams (pipelined) and half over HTTP, at once. Every
// sequence's probabilities equal raw ONNX Runtime running it alone, and
// runs held several sequences.
func TestSileroSequences(t *testing.T) {
	model := sileroModel(t)
	repo := t.TempDir()
	writeModelDir(t, repo, "vad", fmt.Sprintf(vadConfig, "60s", 10000), map[int][]byte{1: model})
	ts := startServer(t, repo)

	sess, err := runtime.Load(filepath.Join(repo, "vad", "1", "model.onnx"), runtime.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	const sequences, chunks = 16, 100
	audio := make([][][]float32, sequences)
	want := make([][]float32, sequences)
	for s := range sequences {
		audio[s] = vadAudio(uint64(s+1), chunks)
		want[s] = vadReference(t, sess, audio[s])
	}
	client := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	ctx, cancel := context.WithTimeout(context.Background(), 4*testTimeout)
	defer cancel()

	got := make([][]float32, sequences)
	errs := make(chan error, sequences)
	for s := range sequences {
		got[s] = make([]float32, chunks)
		go func() {
			errs <- func() error {
				if s%2 == 1 {
					for c := range chunks {
						_, p, err := vadHTTP(ts, "vad", fmt.Sprintf(`"http-%d"`, s), audio[s][c], c == 0, c == chunks-1)
						if err != nil {
							return fmt.Errorf("sequence %d chunk %d: %w", s, c, err)
						}
						got[s][c] = p
					}
					return nil
				}
				stream, err := client.ModelStreamInfer(ctx)
				if err != nil {
					return err
				}
				sendErr := make(chan error, 1)
				go func() {
					for c := range chunks {
						shape := []int64{}
						if c%2 == 1 {
							shape = []int64{1} // a declared scalar takes [1]
						}
						if err := stream.Send(vadGRPCRequest(int64(s+1), audio[s][c], c == 0, c == chunks-1, shape)); err != nil {
							sendErr <- err
							return
						}
					}
					sendErr <- stream.CloseSend()
				}()
				for c := range chunks {
					r, err := stream.Recv()
					if err != nil {
						return fmt.Errorf("sequence %d chunk %d: %w", s, c, err)
					}
					if r.GetErrorMessage() != "" {
						return fmt.Errorf("sequence %d chunk %d: %s", s, c, r.GetErrorMessage())
					}
					out := r.GetInferResponse()
					if len(out.GetOutputs()) != 1 || out.GetOutputs()[0].GetName() != "output" {
						return fmt.Errorf("sequence %d chunk %d: outputs %v, want only the speech probability", s, c, out.GetOutputs())
					}
					got[s][c] = fromFloat32LE(out.GetRawOutputContents()[0])[0]
				}
				return <-sendErr
			}()
		}()
	}
	for range sequences {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("sequences did not finish")
		}
	}
	for s := range sequences {
		for c := range chunks {
			if d := math.Abs(float64(got[s][c] - want[s][c])); d > 1e-5 {
				t.Fatalf("sequence %d chunk %d: served %v, raw ONNX Runtime alone %v (|d| %g)", s, c, got[s][c], want[s][c], d)
			}
		}
	}
	rows := scrapeValue(t, ts, `onnxserve_batch_size_sum{model="vad"`)
	runs := scrapeValue(t, ts, `onnxserve_batch_size_count{model="vad"`)
	t.Logf("%g chunks in %g runs: %.2f sequences per run", rows, runs, rows/runs)
	if rows != sequences*chunks || runs >= rows {
		t.Errorf("%g rows in %g runs: want %d rows and some runs holding several sequences", rows, runs, sequences*chunks)
	}
	if n := scrapeValue(t, ts, `onnxserve_sequences_ended_total{model="vad",reason="end",version="1"}`); n != sequences {
		t.Errorf("sequences ended: %g, want %d", n, sequences)
	}
	if n := scrapeValue(t, ts, `onnxserve_sequences_active{model="vad"`); n != 0 {
		t.Errorf("sequences active after all ended: %g", n)
	}
}

var statusRE = regexp.MustCompile(`^(\d+) `)

func wantStatus(t *testing.T, what string, err error, code int, words ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %d", what, code)
		return
	}
	m := statusRE.FindStringSubmatch(err.Error())
	if m == nil || m[1] != strconv.Itoa(code) {
		t.Errorf("%s: %v, want status %d", what, err, code)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not mention %q", what, err, w)
		}
	}
}

// Bad requests of a sequence model are 400 / INVALID_ARGUMENT naming the
// parameter; idle sequences end; a new sequence beyond max_sequences
// evicts the least recently used one; a sequence stays on its version
// through a hot swap; after a restart a continuation is told its sequence
// is gone.
func TestSequenceLifecycle(t *testing.T) {
	model := sileroModel(t)
	repo := t.TempDir()
	writeModelDir(t, repo, "vad", fmt.Sprintf(vadConfig, "60s", 10000), map[int][]byte{1: model})
	writeModelDir(t, repo, "vad_idle", fmt.Sprintf(vadConfig, "200ms", 10000), map[int][]byte{1: model})
	writeModelDir(t, repo, "vad_small", fmt.Sprintf(vadConfig, "60s", 2), map[int][]byte{1: model})
	ts := startServer(t, repo)
	chunk := vadAudio(99, 1)[0]

	t.Run("bad input", func(t *testing.T) {
		resp, err := http.Post(ts.http+"/v2/models/vad/infer", "application/json", strings.NewReader(
			`{"inputs":[{"name":"input","shape":[1,512],"datatype":"FP32","data":[`+strings.Repeat("0,", 511)+`0]},{"name":"sr","shape":[],"datatype":"INT64","data":[16000]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "sequence_id") {
			t.Errorf("no sequence_id: %d %s", resp.StatusCode, b)
		}
		if _, _, err := vadHTTP(ts, "vad", "5", chunk, true, false); err != nil {
			t.Fatal(err)
		}
		_, _, err = vadHTTP(ts, "vad", "5", chunk, true, false)
		wantStatus(t, "start twice", err, 400, "sequence_start", "already active")
		_, _, err = vadHTTP(ts, "vad", "6", chunk, false, false)
		wantStatus(t, "unknown sequence", err, 400, "sequence_id", "no active sequence")
		_, _, err = vadHTTP(ts, "vad", "0", chunk, true, false)
		wantStatus(t, "sequence_id 0", err, 400, "sequence_id")
		body := strings.Replace(vadJSON("5", chunk, false, false, "[]"), `"inputs":[`, `"inputs":[{"name":"state","shape":[2,1,128],"datatype":"FP32","data":[`+strings.Repeat("0,", 255)+`0]},`, 1)
		resp, err = http.Post(ts.http+"/v2/models/vad/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `input \"state\"`) {
			t.Errorf("client sends the state: %d %s", resp.StatusCode, b)
		}
		if _, _, err := vadHTTP(ts, "vad", "5", chunk, false, true); err != nil {
			t.Errorf("the sequence did not survive the bad requests: %v", err)
		}
		_, _, err = vadHTTP(ts, "vad", "5", chunk, false, false)
		wantStatus(t, "continue an ended sequence", err, 400, "has ended", "sequence_end")

		client := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
		req := vadGRPCRequest(9, chunk, false, false, []int64{})
		delete(req.Parameters, "sequence_id")
		_, err = client.ModelInfer(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "sequence_id") {
			t.Errorf("gRPC without sequence_id: %v", err)
		}
	})

	t.Run("idle", func(t *testing.T) {
		if _, _, err := vadHTTP(ts, "vad_idle", `"i"`, chunk, true, false); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(testTimeout)
		for scrapeValue(t, ts, `onnxserve_sequences_ended_total{model="vad_idle",reason="idle"`) < 1 {
			if time.Now().After(deadline) {
				t.Fatal("the idle sequence never ended")
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, _, err := vadHTTP(ts, "vad_idle", `"i"`, chunk, false, false)
		wantStatus(t, "continue an idle sequence", err, 400, "has ended", "max_sequence_idle")
	})

	t.Run("eviction", func(t *testing.T) {
		for _, id := range []string{"1", "2", "3"} {
			if _, _, err := vadHTTP(ts, "vad_small", id, chunk, true, false); err != nil {
				t.Fatalf("start %s: %v", id, err)
			}
		}
		_, _, err := vadHTTP(ts, "vad_small", "1", chunk, false, false)
		wantStatus(t, "continue an evicted sequence", err, 400, "evicted", "max_sequences 2")
		for _, id := range []string{"2", "3"} {
			if _, _, err := vadHTTP(ts, "vad_small", id, chunk, false, false); err != nil {
				t.Errorf("continue %s: %v", id, err)
			}
		}
		if n := scrapeValue(t, ts, `onnxserve_sequences_ended_total{model="vad_small",reason="evicted"`); n != 1 {
			t.Errorf("evicted: %g, want 1", n)
		}
	})

	t.Run("hot swap", func(t *testing.T) {
		sess, err := runtime.Load(filepath.Join(repo, "vad", "1", "model.onnx"), runtime.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		audio := vadAudio(42, 6)
		want := vadReference(t, sess, audio)
		check := func(c int, wantVersion string, start, end bool) {
			t.Helper()
			v, p, err := vadHTTP(ts, "vad", `"swap"`, audio[c], start, end)
			if err != nil {
				t.Fatalf("chunk %d: %v", c, err)
			}
			if v != wantVersion || math.Abs(float64(p-want[c])) > 1e-5 {
				t.Fatalf("chunk %d: version %s probability %v, want version %s %v", c, v, p, wantVersion, want[c])
			}
		}
		check(0, "1", true, false)
		check(1, "1", false, false)
		dir := filepath.Join(repo, "vad", "2")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(testTimeout)
		for {
			v, _, err := vadHTTP(ts, "vad", `"new"`, chunk, true, true)
			if err == nil && v == "2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("version 2 never took new sequences: %v %v", v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		check(2, "1", false, false)
		check(3, "1", false, false)
		if idx := indexString(t, ts); !strings.Contains(idx, `"name":"vad","state":"UNLOADING","version":"1"`) {
			t.Errorf("index %s: version 1 should be UNLOADING while its sequence runs", idx)
		}
		check(4, "1", false, true)
		deadline = time.Now().Add(testTimeout)
		for strings.Contains(indexString(t, ts), `"name":"vad","state":"UNLOADING"`) {
			if time.Now().After(deadline) {
				t.Fatalf("version 1 was not released after its last sequence ended: %s", indexString(t, ts))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("restart", func(t *testing.T) {
		if _, _, err := vadHTTP(ts, "vad", `"r"`, chunk, true, false); err != nil {
			t.Fatal(err)
		}
		ts.shutdown(t)
		ts2 := startServer(t, repo)
		_, _, err := vadHTTP(ts2, "vad", `"r"`, chunk, false, false)
		wantStatus(t, "continue after a restart", err, 400, "no active sequence", "sequence_start")
	})
}
