package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	inference "github.com/onnxserve/onnxserve/proto"
)

// withValidation writes a classifier copy named name whose config ends
// with block.
func withValidation(t *testing.T, repo, name, block string) {
	t.Helper()
	src := filepath.Join(repo, "classifier")
	dst := filepath.Join(repo, name)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "config.yaml" {
			b = append(b, []byte("\n"+block+"\n")...)
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// featureRow is one classifier row: zeros but feature f, which is x.
func featureRow(f int, x float32) []float32 {
	v := make([]float32, 64)
	v[f] = x
	return v
}

func jsonBody(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return `{"inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(s, ",") + `]}]}`
}

func grpcInfer(ctx context.Context, c inference.GRPCInferenceServiceClient, model string, v []float32) error {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	_, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: model, ModelVersion: "1",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "FP32", Shape: []int64{1, 64}}},
		RawInputContents: [][]byte{raw}})
	return err
}

// TestValidationOverBothProtocols: counted and rejected values are exact
// over HTTP and gRPC, and a rejection names input, row, feature, value and
// rule with 400 / INVALID_ARGUMENT.
func TestValidationOverBothProtocols(t *testing.T) {
	repo := copyRepo(t)
	withValidation(t, repo, "counted", "validation: {nan: count, inf: count, range: {INPUT: [-1, 1]}, range_action: count}")
	withValidation(t, repo, "strict", "validation: {nan: reject, inf: reject, range: {INPUT: [-1, 1]}, range_action: reject}")
	ts := startServer(t, repo)
	conn, err := grpc.NewClient(ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inference.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// Counted: row i has i values out of range; each request is answered.
	wantRange := 0
	for i := range 6 {
		row := make([]float32, 64)
		for f := range i {
			row[f] = 5
		}
		wantRange += 2 * i
		var r inferResponse
		if code := do(t, "POST", ts.http+"/v2/models/counted/versions/1/infer", jsonBody(row), &r); code != 200 {
			t.Fatalf("HTTP counted request %d: %d %s", i, code, r.Error)
		}
		if err := grpcInfer(ctx, client, "counted", row); err != nil {
			t.Fatalf("gRPC counted request %d: %v", i, err)
		}
	}
	for _, v := range []float32{float32(math.NaN()), float32(math.NaN()), float32(math.Inf(1))} {
		if err := grpcInfer(ctx, client, "counted", featureRow(3, v)); err != nil {
			t.Fatalf("gRPC counted NaN/Inf: %v", err)
		}
	}

	// Rejected, over both protocols.
	var r inferResponse
	code := do(t, "POST", ts.http+"/v2/models/strict/versions/1/infer", jsonBody(featureRow(7, 912.5)), &r)
	wantMsg := `input "INPUT" row 0 feature 7: 912.5 is outside the range [-1, 1] (validation.range)`
	if code != 400 || !strings.Contains(r.Error, wantMsg) {
		t.Errorf("HTTP out of range: %d %q, want 400 with %q", code, r.Error, wantMsg)
	}
	err = grpcInfer(ctx, client, "strict", featureRow(7, 912.5))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("gRPC out of range: %v", err)
	}
	err = grpcInfer(ctx, client, "strict", featureRow(2, float32(math.NaN())))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `input "INPUT" row 0 feature 2: NaN is not allowed (validation.nan)`) {
		t.Errorf("gRPC NaN: %v", err)
	}

	fams := scrape(t, ts)
	for _, c := range []struct {
		model, rule string
		want        float64
	}{
		{"counted", "range", float64(wantRange)}, {"counted", "nan", 2}, {"counted", "inf", 1},
		{"strict", "range", 2}, {"strict", "nan", 1},
	} {
		got := counterValue(t, fams, "onnxserve_validation_failures_total", map[string]string{"model": c.model, "version": "1", "input": "INPUT", "rule": c.rule})
		if got != c.want {
			t.Errorf("onnxserve_validation_failures_total{model=%q,rule=%q} = %g, want %g", c.model, c.rule, got, c.want)
		}
	}
}
