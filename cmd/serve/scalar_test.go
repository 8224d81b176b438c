package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"

	"github.com/onnxserve/onnxserve/internal/onnxgen"
	inference "github.com/onnxserve/onnxserve/proto"
)

// scaleModel computes Y = X * K for X FP32 [batch, 4] and a scalar K, and
// returns K as the scalar output S: a scalar input and output in a
// batching model.
func scaleModel() []byte {
	g := onnxgen.NewGraph("scale")
	g.AddInput("X", onnxgen.Float, []int64{onnxgen.Dynamic, 4})
	g.AddInput("K", onnxgen.Float, nil)
	g.AddOutput("Y", onnxgen.Float, []int64{onnxgen.Dynamic, 4})
	g.AddOutput("S", onnxgen.Float, nil)
	g.AddNode("Mul", []string{"X", "K"}, []string{"Y"})
	g.AddNode("Identity", []string{"K"}, []string{"S"})
	return g.Model(onnxgen.DefaultOpset)
}

func writeModelDir(t *testing.T, repo, name, config string, versions map[int][]byte) {
	t.Helper()
	for v, model := range versions {
		dir := filepath.Join(repo, name, fmt.Sprint(v))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, name, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

func float32LE(v ...float32) []byte {
	var b []byte
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func fromFloat32LE(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// A rank-0 input and output work over HTTP JSON, the binary extension and
// gRPC; the metadata says shape []; a declared scalar takes [1] too.
func TestScalarsOnEveryEncoding(t *testing.T) {
	repo := t.TempDir()
	writeModelDir(t, repo, "scale", "max_batch_size: 8\ndynamic_batching: {max_queue_delay: 1ms}\n", map[int][]byte{1: scaleModel()})
	ts := startServer(t, repo)

	var md struct {
		Inputs []struct {
			Name  string  `json:"name"`
			Shape []int64 `json:"shape"`
		} `json:"inputs"`
	}
	if code := do(t, "GET", ts.http+"/v2/models/scale", "", &md); code != http.StatusOK {
		t.Fatalf("metadata: %d", code)
	}
	if len(md.Inputs) != 2 || md.Inputs[1].Name != "K" || md.Inputs[1].Shape == nil || len(md.Inputs[1].Shape) != 0 {
		t.Fatalf("metadata inputs %+v, want K with shape []", md.Inputs)
	}
	wantY := `[2.5,5,7.5,10]`

	for _, kShape := range []string{"[]", "[1]"} {
		t.Run("json K "+kShape, func(t *testing.T) {
			var r inferResponse
			body := `{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"K","shape":` + kShape + `,"datatype":"FP32","data":[2.5]}]}`
			if code := do(t, "POST", ts.http+"/v2/models/scale/infer", body, &r); code != http.StatusOK {
				t.Fatalf("infer: %d %s", code, r.Error)
			}
			if string(r.Outputs[0].Data) != wantY || string(r.Outputs[1].Data) != "[2.5]" || len(r.Outputs[1].Shape) != 0 {
				t.Errorf("outputs %+v, want Y %s and S [2.5] of shape []", r.Outputs, wantY)
			}
		})
	}

	t.Run("binary", func(t *testing.T) {
		hdr := `{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"K","shape":[],"datatype":"FP32","parameters":{"binary_data_size":4}}],"parameters":{"binary_data_output":true}}`
		body := append([]byte(hdr), float32LE(1, 2, 3, 4)...)
		body = append(body, float32LE(2.5)...)
		req, _ := http.NewRequest("POST", ts.http+"/v2/models/scale/infer", bytes.NewReader(body))
		req.Header.Set("Inference-Header-Content-Length", fmt.Sprint(len(hdr)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("infer: %d %s", resp.StatusCode, buf.String())
		}
		n := 0
		fmt.Sscan(resp.Header.Get("Inference-Header-Content-Length"), &n)
		js, bin := buf.Bytes()[:n], buf.Bytes()[n:]
		if !strings.Contains(string(js), `"name":"S","datatype":"FP32","shape":[]`) {
			t.Errorf("header %s does not give S shape []", js)
		}
		if got := fromFloat32LE(bin); fmt.Sprint(got) != "[2.5 5 7.5 10 2.5]" {
			t.Errorf("binary outputs %v", got)
		}
	})

	t.Run("grpc", func(t *testing.T) {
		c := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		for _, shape := range [][]int64{{}, {1}} {
			resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{
				ModelName: "scale",
				Inputs: []*inference.ModelInferRequest_InferInputTensor{
					{Name: "X", Datatype: "FP32", Shape: []int64{1, 4}},
					{Name: "K", Datatype: "FP32", Shape: shape},
				},
				RawInputContents: [][]byte{float32LE(1, 2, 3, 4), float32LE(2.5)},
			})
			if err != nil {
				t.Fatalf("K shape %v: %v", shape, err)
			}
			if got := fromFloat32LE(resp.RawOutputContents[0]); fmt.Sprint(got) != "[2.5 5 7.5 10]" {
				t.Errorf("K shape %v: Y %v", shape, got)
			}
			if s := resp.Outputs[1]; len(s.Shape) != 0 || fmt.Sprint(fromFloat32LE(resp.RawOutputContents[1])) != "[2.5]" {
				t.Errorf("K shape %v: S shape %v data %v", shape, s.Shape, fromFloat32LE(resp.RawOutputContents[1]))
			}
		}
	})

	t.Run("requests with different scalars do not share a batch", func(t *testing.T) {
		errs := make(chan error, 16)
		for i := range 16 {
			go func() {
				k := float32(i + 1)
				var r inferResponse
				body := fmt.Sprintf(`{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]},{"name":"K","shape":[],"datatype":"FP32","data":[%g]}]}`, k)
				code := do(t, "POST", ts.http+"/v2/models/scale/infer", body, &r)
				want := fmt.Sprintf("[%g,%g,%g,%g]", k, k, k, k)
				if code != http.StatusOK || string(r.Outputs[0].Data) != want {
					errs <- fmt.Errorf("K=%g: %d %s %s, want %s", k, code, r.Error, r.Outputs[0].Data, want)
					return
				}
				errs <- nil
			}()
		}
		for range 16 {
			select {
			case err := <-errs:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(testTimeout):
				t.Fatal("requests did not finish")
			}
		}
	})
}

// With --strict-readiness=false a model whose only version cannot load
// stays UNAVAILABLE without keeping the server unready; by default it does.
func TestStrictReadiness(t *testing.T) {
	repo := t.TempDir()
	writeModelDir(t, repo, "scale", "max_batch_size: 8\n", map[int][]byte{1: scaleModel()})
	writeModelDir(t, repo, "identity", "", map[int][]byte{1: onnxgen.Identity(onnxgen.Float, []int64{2})})
	writeModelDir(t, repo, "broken", "", map[int][]byte{1: []byte("this is not an ONNX model")})

	t.Run("false", func(t *testing.T) {
		ts := startServer(t, repo, "--strict-readiness=false") // waits for ready
		if idx := indexString(t, ts); !strings.Contains(idx, `"name":"broken","reason"`) || !strings.Contains(idx, `"state":"UNAVAILABLE"`) {
			t.Errorf("index %s does not show broken UNAVAILABLE with its reason", idx)
		}
		if code := do(t, "GET", ts.http+"/v2/models/broken/ready", "", nil); code != http.StatusServiceUnavailable {
			t.Errorf("broken model ready: %d, want 503", code)
		}
		for _, m := range []string{"scale", "identity"} {
			if code := do(t, "GET", ts.http+"/v2/models/"+m+"/ready", "", nil); code != http.StatusOK {
				t.Errorf("%s ready: %d, want 200", m, code)
			}
		}
	})
	t.Run("true", func(t *testing.T) {
		ts := startServerNoWait(t, repo)
		waitReason(t, ts, "1", "UNAVAILABLE")
		if code := do(t, "GET", ts.http+"/v2/health/ready", "", nil); code != http.StatusServiceUnavailable {
			t.Errorf("ready with a broken model under --strict-readiness=true: %d, want 503", code)
		}
	})
}
