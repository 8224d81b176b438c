package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// scoreRows is how many rows the score tests use; ONNXSERVE_SCORE_ROWS
// raises it (`make score-1m` runs them on 1,000,000).
func scoreRows(t *testing.T, def int) int {
	if s := os.Getenv("ONNXSERVE_SCORE_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("ONNXSERVE_SCORE_ROWS=%q", s)
		}
		return n
	}
	return def
}

var classifierInput = tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}}
var classifierOutput = tensor.Spec{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{10}}

// classifierRow is row i of the test data: 64 values in [-1, 1) from a
// seeded source, so every format holds the same numbers.
func classifierRow(rng *rand.Rand) tensor.Tensor {
	data := make([]byte, 0, 256)
	for range 64 {
		v := float32(math.Round((rng.Float64()*2-1)*1e4) / 1e4)
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	return tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}, Data: data}
}

// writeInputs writes the same n classifier rows in every input format
// and returns the paths by extension.
func writeInputs(t *testing.T, dir string, n int) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, ext := range []string{"jsonl", "csv", "npy", "parquet"} {
		p := filepath.Join(dir, "in."+ext)
		paths[ext] = p
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		format, _ := dataset.FormatOf(p)
		w, err := dataset.NewWriter(f, format, dataset.WriteOptions{Outputs: []tensor.Spec{classifierInput}, Rows: int64(n)})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 11))
		for range n {
			if err := w.Write("", []tensor.Tensor{classifierRow(rng)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// readOutputs reads a score output back as rows of OUTPUT.
func readOutputs(t *testing.T, path string) [][]byte {
	t.Helper()
	r, err := dataset.Open(path, dataset.ReadOptions{Inputs: []tensor.Spec{classifierOutput}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out [][]byte
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if row.Err != nil {
			t.Fatalf("%s record %d: %v", path, row.Index, row.Err)
		}
		out = append(out, row.Inputs[0].Data)
	}
}

// TestScoreFormatsAgree scores the same rows from all four input formats:
// the outputs are byte-identical, every output format holds the same
// values, and a sample equals what the server answers for those rows.
func TestScoreFormatsAgree(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	n := scoreRows(t, 3000)
	bin := buildServer(t)
	dir := t.TempDir()
	repo := filepath.Join("..", "..", "models")
	in := writeInputs(t, dir, n)
	var first []byte
	for _, ext := range []string{"jsonl", "csv", "npy", "parquet"} {
		out := filepath.Join(dir, "from-"+ext+".jsonl")
		status, msg := runBinary(t, bin, "score", "--model-repository", repo, "--model", "classifier", "--version", "1",
			"--input", in[ext], "--output", out, "--progress", "none")
		if status != 0 {
			t.Fatalf("score %s: exit %d\n%s", ext, status, msg)
		}
		if !strings.Contains(msg, fmt.Sprintf("%d rows, 0 errors", n)) {
			t.Errorf("score %s summary: %s", ext, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Errorf("output from %s differs from the output from jsonl", ext)
		}
	}
	want := readOutputs(t, filepath.Join(dir, "from-jsonl.jsonl"))
	if len(want) != n {
		t.Fatalf("%d output rows for %d input rows", len(want), n)
	}
	// NPY holds one array and no id column: a clear error, no file.
	npyOut := filepath.Join(dir, "ids.npy")
	status, msg := runBinary(t, bin, "score", "--model-repository", repo, "--model", "classifier", "--version", "1",
		"--input", in["jsonl"], "--id-column", "id", "--output", npyOut, "--progress", "none")
	if status != 1 || !strings.Contains(msg, "no id column") {
		t.Errorf("npy output with an id column: exit %d\n%s", status, msg)
	}
	if _, err := os.Stat(npyOut); err == nil {
		t.Error("a refused job left an output file")
	}
	for _, ext := range []string{"csv", "npy", "parquet"} {
		out := filepath.Join(dir, "out."+ext)
		status, msg := runBinary(t, bin, "score", "--model-repository", repo, "--model", "classifier", "--version", "1",
			"--input", in["csv"], "--output", out, "--progress", "none")
		if status != 0 {
			t.Fatalf("score to %s: exit %d\n%s", ext, status, msg)
		}
		got := readOutputs(t, out)
		if len(got) != n {
			t.Fatalf("%s: %d rows, want %d", ext, len(got), n)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s row %d differs from the JSON lines output", ext, i)
			}
		}
	}

	// A sample against the server: each row alone, over HTTP.
	ts := startServer(t, copyRepo(t))
	rng := rand.New(rand.NewPCG(7, 11))
	sample := rand.New(rand.NewPCG(1, 2))
	picked := map[int]bool{0: true, n - 1: true}
	for len(picked) < min(50, n) {
		picked[sample.IntN(n)] = true
	}
	for i := range n {
		row := classifierRow(rng)
		if !picked[i] {
			continue
		}
		got := serverAnswer(t, ts, row)
		if !bytes.Equal(got, want[i]) {
			t.Errorf("row %d: score wrote %v, the server answers %v", i, floats(want[i]), floats(got))
		}
	}
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// serverAnswer posts one row to classifier v1 and returns OUTPUT's bytes.
func serverAnswer(t *testing.T, ts *testServer, row tensor.Tensor) []byte {
	t.Helper()
	vals := floats(row.Data)
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "INPUT", "shape": []int{1, 64}, "datatype": "FP32", "data": vals}}})
	resp, err := httpClient.Post(ts.http+"/v2/models/classifier/versions/1/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Outputs) != 1 {
		t.Fatalf("infer: %v (status %d)", err, resp.StatusCode)
	}
	var out []byte
	for _, v := range r.Outputs[0].Data {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return out
}

// TestScoreResumeAfterKill kills the real binary with SIGKILL at a random
// point after its first checkpoint, resumes, and requires the output and
// the errors file to be byte-identical to an uninterrupted run's.
func TestScoreResumeAfterKill(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	n := scoreRows(t, 120000)
	bin := buildServer(t)
	dir := t.TempDir()
	repo := filepath.Join("..", "..", "models")
	// JSON lines with a few bad rows, so the errors file is compared too.
	input := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(input)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	var b []byte
	for i := range n {
		b = b[:0]
		if i%9973 == 5 {
			b = fmt.Appendf(b, `{"id": %d, "INPUT": [1, 2, 3]}`+"\n", i)
		} else {
			b = fmt.Appendf(b, `{"id": %d, "INPUT": %v}`+"\n", i, strings.ReplaceAll(fmt.Sprint(floats(classifierRow(rng).Data)), " ", ","))
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	args := func(out string, extra ...string) []string {
		return append([]string{"score", "--model-repository", repo, "--model", "classifier", "--input", input, "--output", out,
			"--id-column", "id", "--chunk-rows", "1000", "--batch-size", "64", "--progress", "plain"}, extra...)
	}
	whole := filepath.Join(dir, "whole.csv")
	if status, msg := runBinary(t, bin, args(whole)...); status != scoreRowsFailed {
		t.Fatalf("uninterrupted run: exit %d, want %d (bad rows)\n%s", status, scoreRowsFailed, msg)
	}

	out := filepath.Join(dir, "resumed.csv")
	cmd := exec.Command(bin, args(out)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill as soon as a checkpoint chosen at random among the first third
	// of the job's chunks is written: a fast run cannot finish before
	// the kill, as it could after a delay measured in time.
	target := filepath.Join(out+".parts", fmt.Sprintf("chunk-%08d.bin", rand.IntN(max(1, n/1000/3))))
	deadline := time.After(testTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no checkpoint written")
		case <-tick.C:
			if _, err := os.Stat(target); err == nil {
				waiting = false
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the run ended before the kill (%v); raise ONNXSERVE_SCORE_ROWS", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a killed run left an output file")
	}
	status, msg := runBinary(t, bin, args(out)...)
	if status != 1 || !strings.Contains(msg, "--resume continues it") {
		t.Errorf("rerun without --resume: exit %d\n%s", status, msg)
	}
	status, msg = runBinary(t, bin, args(out, "--resume")...)
	if status != scoreRowsFailed || !strings.Contains(msg, "resumed after") {
		t.Fatalf("resume: exit %d\n%s", status, msg)
	}
	for _, pair := range [][2]string{{whole, out}, {whole + ".errors.jsonl", out + ".errors.jsonl"}} {
		a, err1 := os.ReadFile(pair[0])
		b, err2 := os.ReadFile(pair[1])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from the uninterrupted %s", pair[1], pair[0])
		}
	}
	if _, err := os.Stat(out + ".parts"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the parts folder is left after the resumed run: %v", err)
	}
	errs, _ := os.ReadFile(out + ".errors.jsonl")
	if want := (n + 9973 - 6) / 9973; strings.Count(string(errs), "\n") != want || !strings.Contains(string(errs), `"line":6,`) {
		t.Errorf("errors file, want %d bad rows with line numbers:\n%s", want, errs)
	}
}

// TestScoreBadInput: each mistake is a clear error and a non-zero exit,
// and leaves no output.
func TestScoreBadInput(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	dir := t.TempDir()
	repo := filepath.Join("..", "..", "models")
	in := writeInputs(t, dir, 10)
	badCSV := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badCSV, []byte("a,b,c\n1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(dir, "exists.jsonl")
	if err := os.WriteFile(exists, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := func(input, output string, extra ...string) []string {
		return append([]string{"score", "--model-repository", repo, "--input", input, "--output", output, "--progress", "none"}, extra...)
	}
	tests := []struct {
		name   string
		args   []string
		status int
		want   string
		output string // must not exist afterwards ("" to skip)
	}{
		{"unknown model", base(in["jsonl"], filepath.Join(dir, "o1.jsonl"), "--model", "nope"), 1, `model "nope"`, filepath.Join(dir, "o1.jsonl")},
		{"unknown version", base(in["jsonl"], filepath.Join(dir, "o2.jsonl"), "--model", "classifier", "--version", "9"), 1, `version "9" not found`, filepath.Join(dir, "o2.jsonl")},
		{"column count", base(badCSV, filepath.Join(dir, "o3.jsonl"), "--model", "classifier"), 1, "takes 64 values a row", filepath.Join(dir, "o3.jsonl")},
		{"dtype mismatch", base(in["npy"], filepath.Join(dir, "o4.jsonl"), "--model", "simple"), 1, "fills one input", filepath.Join(dir, "o4.jsonl")},
		{"output exists", base(in["jsonl"], exists, "--model", "classifier"), 1, "--overwrite replaces it", ""},
		{"unknown output format", base(in["jsonl"], filepath.Join(dir, "o5.txt"), "--model", "classifier"), 1, "unknown format", filepath.Join(dir, "o5.txt")},
		{"missing input", base(filepath.Join(dir, "none.csv"), filepath.Join(dir, "o6.csv"), "--model", "classifier"), 1, "no such file", filepath.Join(dir, "o6.csv")},
		{"no model flag", base(in["jsonl"], filepath.Join(dir, "o7.jsonl")), 2, "required", ""},
		{"fail fast", append(base(badCSV, filepath.Join(dir, "o8.jsonl"), "--model", "classifier", "--columns", "a"), "--fail-fast"), 1, "takes 64 values", filepath.Join(dir, "o8.jsonl")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := runBinary(t, bin, tt.args...)
			if status != tt.status || !strings.Contains(msg, tt.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", status, tt.status, tt.want, msg)
			}
			if tt.output != "" {
				if _, err := os.Stat(tt.output); err == nil {
					t.Errorf("%s was written", tt.output)
				}
			}
		})
	}
	if b, _ := os.ReadFile(exists); string(b) != "old\n" {
		t.Errorf("an existing output was changed: %q", b)
	}
}
