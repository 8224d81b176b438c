package score

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// poison is an input value that makes the fake model fail any run that
// holds it, so a batch falls back to running its rows one by one.
const poison = -77.25

// sumModel is a fake on FP32 INPUT [-1, -1]: OUT [-1, 2] holds each row's
// sum and its first element times the row's length. Rows of different
// widths cannot share a run, so it also catches a batch that mixes them.
func sumModel(runs *atomic.Int64) *servingtest.Model {
	return &servingtest.Model{
		In:  []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, -1}}},
		Out: []tensor.Spec{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{-1, 2}}},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			runs.Add(1)
			x := in[0]
			if len(x.Shape) != 2 || int64(len(x.Data)) != 4*x.Shape[0]*x.Shape[1] {
				return nil, fmt.Errorf("input shape %v for %d bytes", x.Shape, len(x.Data))
			}
			n, w := int(x.Shape[0]), int(x.Shape[1])
			out := make([]byte, 0, 8*n)
			for r := range n {
				row := fp32s(x.Data[4*r*w : 4*(r+1)*w])
				if slices.Contains(row, poison) {
					return nil, errors.New("poisoned")
				}
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(sum(row)))
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(firstTimesWidth(row)))
			}
			return []tensor.Tensor{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{int64(n), 2}, Data: out}}, nil
		},
	}
}

func sum(row []float32) float32 {
	var s float32
	for _, v := range row {
		s += v
	}
	return s
}

func firstTimesWidth(row []float32) float32 {
	if len(row) == 0 {
		return 0
	}
	return row[0] * float32(len(row))
}

func fp32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// fakeLoader loads its model for every path.
type fakeLoader struct{ m serving.Model }

func (l fakeLoader) Load(context.Context, string, repository.Instances) (serving.Model, error) {
	return l.m, nil
}

// fakeRepo makes a model repository with one model "m" version 1 whose
// file the fake loader never reads.
func fakeRepo(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "m", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m", "config.yaml"), []byte("max_batch_size: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m", "1", "model.onnx"), []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// testRecord is one line of the test input: good rows of width 3, a few
// of width 2 (a new batch each time the width changes), poisoned rows
// (inference fails for them alone) and malformed lines.
type testRecord struct {
	line     string
	row      []float32 // nil for a record that fails
	id       string
	poisoned bool
}

func testRecords(n int) []testRecord {
	var recs []testRecord
	for i := range n {
		id := fmt.Sprintf("r%d", i)
		switch {
		case i%17 == 5:
			recs = append(recs, testRecord{line: fmt.Sprintf(`{"id": %q, "INPUT": [1, "x", 3]}`, id), id: id})
		case i%23 == 9:
			recs = append(recs, testRecord{line: fmt.Sprintf(`{"id": %q, "INPUT": [%v, 1, 2]}`, id, poison), id: id, poisoned: true})
		case i%11 < 3:
			row := []float32{float32(i) / 4, -float32(i)}
			recs = append(recs, testRecord{line: fmt.Sprintf(`{"id": %q, "INPUT": [%v, %v]}`, id, row[0], row[1]), row: row, id: id})
		default:
			row := []float32{float32(i) / 8, 1.5, -float32(i % 7)}
			recs = append(recs, testRecord{line: fmt.Sprintf(`{"id": %q, "INPUT": [%v, %v, %v]}`, id, row[0], row[1], row[2]), row: row, id: id})
		}
	}
	return recs
}

func writeRecords(t *testing.T, path string, recs []testRecord) {
	t.Helper()
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.line + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectedOutput writes, with dataset's own writer, what scoring recs
// must produce: the good rows' outputs in order, with the id column idCol
// ("" for none).
func expectedOutput(t *testing.T, f dataset.Format, recs []testRecord, idCol string) []byte {
	t.Helper()
	good := 0
	for _, r := range recs {
		if r.row != nil {
			good++
		}
	}
	var buf bytes.Buffer
	w, err := dataset.NewWriter(&buf, f, dataset.WriteOptions{Outputs: []tensor.Spec{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{2}}},
		IDColumn: idCol, Rows: int64(good)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.row == nil {
			continue
		}
		data := binary.LittleEndian.AppendUint32(nil, math.Float32bits(sum(r.row)))
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(firstTimesWidth(r.row)))
		if err := w.Write(r.id, []tensor.Tensor{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{2}, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestScoreOutputs scores the same records into every output format, with
// small batches and chunks and two workers: the output is what dataset's
// writer makes of the expected rows, and the errors file lists the bad
// and the poisoned records, in order.
func TestScoreOutputs(t *testing.T) {
	root := fakeRepo(t)
	dir := t.TempDir()
	recs := testRecords(300)
	in := filepath.Join(dir, "in.jsonl")
	writeRecords(t, in, recs)
	var runs atomic.Int64
	loader := fakeLoader{sumModel(&runs)}
	for _, f := range []dataset.Format{dataset.JSONL, dataset.CSV, dataset.NPY, dataset.Parquet} {
		t.Run(string(f), func(t *testing.T) {
			out := filepath.Join(dir, "out."+string(f))
			cfg := Config{Root: root, Model: "m", Input: in, Output: out, IDColumn: "id", BatchSize: 5, Workers: 2, CPUs: 2, ChunkRows: 40}
			if f == dataset.NPY {
				cfg.IDColumn = ""
				cfg.Input = filepath.Join(dir, "in-noid.jsonl")
				var noID []testRecord
				for _, r := range recs {
					r.line = strings.Replace(r.line, fmt.Sprintf(`"id": %q, `, r.id), "", 1)
					r.id = ""
					noID = append(noID, r)
				}
				writeRecords(t, cfg.Input, noID)
			}
			sum, err := Run(context.Background(), loader, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := expectedOutput(t, f, recs, cfg.IDColumn); !bytes.Equal(got, want) {
				t.Errorf("output differs from the expected rows (%d bytes, want %d)", len(got), len(want))
			}
			checkErrorsFile(t, ErrorsPath(out), recs)
			good := 0
			for _, r := range recs {
				if r.row != nil {
					good++
				}
			}
			if sum.Rows != int64(good) || sum.Errors != int64(len(recs)-good) {
				t.Errorf("summary %d rows, %d errors; want %d and %d", sum.Rows, sum.Errors, good, len(recs)-good)
			}
			if _, err := os.Stat(out + ".parts"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("parts folder left: %v", err)
			}
			if _, err := os.Stat(out + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary output left: %v", err)
			}
		})
	}
}

// checkErrorsFile requires one line per failed record, in order.
func checkErrorsFile(t *testing.T, path string, recs []testRecord) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	k := 0
	for i, r := range recs {
		if r.row != nil {
			continue
		}
		if k >= len(lines) {
			t.Fatalf("errors file has %d lines; record %d is missing", len(lines), i+1)
		}
		want := fmt.Sprintf(`{"record":%d,"line":%d,"error":`, i+1, i+1)
		if !strings.HasPrefix(lines[k], want) || r.poisoned != strings.Contains(lines[k], "inference failed: ") {
			t.Errorf("errors line %d: %s, want %s... (poisoned %v)", k, lines[k], want, r.poisoned)
		}
		k++
	}
	if k != len(lines) {
		t.Errorf("errors file has %d lines, want %d", len(lines), k)
	}
}

// stopAfter is a Progress that cancels the job once n records are done.
type stopAfter struct {
	n, done int64
	cancel  context.CancelFunc
}

func (p *stopAfter) Start(_, done int64) { p.done = done }
func (p *stopAfter) Add(n int64) {
	if p.done += n; p.done >= p.n {
		p.cancel()
	}
}
func (p *stopAfter) Finish() {}

// TestScoreResume stops a job part way, and once after its last chunk
// (before the output is in place), and resumes it: the output and the
// errors file are byte for byte those of a job that ran through, for
// every format (the streamed ones replay the chunks done before).
func TestScoreResume(t *testing.T) {
	root := fakeRepo(t)
	dir := t.TempDir()
	recs := testRecords(400)
	for i := range recs {
		if recs[i].row == nil {
			continue
		}
		// NPY takes no ids, so the same input serves every format.
		recs[i].line = strings.Replace(recs[i].line, fmt.Sprintf(`"id": %q, `, recs[i].id), "", 1)
	}
	in := filepath.Join(dir, "in.jsonl")
	writeRecords(t, in, recs)
	var runs atomic.Int64
	loader := fakeLoader{sumModel(&runs)}
	type stop struct {
		f     dataset.Format
		after int64 // records
	}
	for _, tt := range []stop{{dataset.JSONL, 150}, {dataset.CSV, 150}, {dataset.NPY, 150}, {dataset.Parquet, 150}, {dataset.JSONL, 400}, {dataset.NPY, 400}} {
		f := tt.f
		t.Run(fmt.Sprintf("%s after %d", f, tt.after), func(t *testing.T) {
			cfg := func(out string) Config {
				return Config{Root: root, Model: "m", Input: in, Output: out, BatchSize: 4, Workers: 3, CPUs: 3, ChunkRows: 30}
			}
			whole := filepath.Join(dir, fmt.Sprintf("whole-%d.%s", tt.after, f))
			if _, err := Run(context.Background(), loader, cfg(whole)); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, fmt.Sprintf("resumed-%d.%s", tt.after, f))
			ctx, cancel := context.WithCancel(context.Background())
			c := cfg(out)
			c.Progress = &stopAfter{n: tt.after, cancel: cancel}
			if _, err := Run(ctx, loader, c); !errors.Is(err, context.Canceled) {
				t.Fatalf("stopped run: %v", err)
			}
			cancel()
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a stopped run left an output")
			}
			if _, err := os.Stat(out + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a stopped run left its temporary output: %v", err)
			}
			c = cfg(out)
			c.Resume = true
			sum, err := Run(context.Background(), loader, c)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Resumed == 0 || sum.Resumed%30 != 0 && sum.Resumed != 400 {
				t.Errorf("resumed after %d records, want a positive multiple of the chunk, or all 400", sum.Resumed)
			}
			for _, p := range [][2]string{{whole, out}, {ErrorsPath(whole), ErrorsPath(out)}} {
				a, _ := os.ReadFile(p[0])
				b, _ := os.ReadFile(p[1])
				if len(a) == 0 || !bytes.Equal(a, b) {
					t.Errorf("%s (%d bytes) differs from %s (%d bytes)", p[1], len(b), p[0], len(a))
				}
			}
		})
	}
}

// TestScoreNPYInput scores an NPY file: the output holds the expected
// rows, a poisoned row fails alone (an NPY record has no line), and a
// stopped job resumes to the same bytes.
func TestScoreNPYInput(t *testing.T) {
	root := fakeRepo(t)
	dir := t.TempDir()
	var recs []testRecord
	var rows [][]tensor.Tensor
	for i := range 300 {
		row := []float32{float32(i) / 8, 1.5, -float32(i % 7)}
		r := testRecord{row: row}
		if i%23 == 9 {
			row[0], r.row, r.poisoned = poison, nil, true
		}
		data := make([]byte, 0, 12)
		for _, v := range row {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		recs = append(recs, r)
		rows = append(rows, []tensor.Tensor{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{3}, Data: data}})
	}
	in := filepath.Join(dir, "in.npy")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w, err := dataset.NewWriter(f, dataset.NPY, dataset.WriteOptions{Outputs: []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{3}}}, Rows: int64(len(rows))})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write("", r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var runs atomic.Int64
	loader := fakeLoader{sumModel(&runs)}
	cfg := func(out string) Config {
		return Config{Root: root, Model: "m", Input: in, Output: out, BatchSize: 5, Workers: 2, CPUs: 2, ChunkRows: 40}
	}
	whole := filepath.Join(dir, "whole.jsonl")
	if _, err := Run(context.Background(), loader, cfg(whole)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(whole)
	if want := expectedOutput(t, dataset.JSONL, recs, ""); !bytes.Equal(got, want) {
		t.Errorf("output differs from the expected rows (%d bytes, want %d)", len(got), len(want))
	}
	errs, _ := os.ReadFile(ErrorsPath(whole))
	var want strings.Builder
	for i, r := range recs {
		if r.poisoned {
			fmt.Fprintf(&want, "{\"record\":%d,\"error\":\"inference failed: poisoned\"}\n", i+1)
		}
	}
	if string(errs) != want.String() {
		t.Errorf("errors file\n%s\nwant\n%s", errs, want.String())
	}
	out := filepath.Join(dir, "resumed.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	c := cfg(out)
	c.Progress = &stopAfter{n: 100, cancel: cancel}
	if _, err := Run(ctx, loader, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v", err)
	}
	cancel()
	c = cfg(out)
	c.Resume = true
	if _, err := Run(context.Background(), loader, c); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, got) {
		t.Error("the resumed output differs from the uninterrupted one")
	}
}

// TestScoreStopCommitsNoCutRun stops a job while a run is in progress, as
// SIGINT does: the run fails for the stop, not for its rows, so its batch
// must not reach a committed chunk, where --resume would take its rows as
// failed for good.
func TestScoreStopCommitsNoCutRun(t *testing.T) {
	root := fakeRepo(t)
	dir := t.TempDir()
	// Rows of one width, so that every batch of four is a chunk.
	var recs []testRecord
	for i := range 60 {
		recs = append(recs, testRecord{line: fmt.Sprintf(`{"id": "r%d", "INPUT": [%d, 2, 3]}`, i, i)})
	}
	in := filepath.Join(dir, "in.jsonl")
	writeRecords(t, in, recs)
	for i := range 20 {
		out := filepath.Join(dir, fmt.Sprintf("out-%d.jsonl", i))
		var runs atomic.Int64
		blocked := make(chan struct{})
		inner := sumModel(&runs)
		model := &servingtest.Model{In: inner.In, Out: inner.Out, RunFunc: func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			if runs.Load() < 3 {
				return inner.RunFunc(ctx, in)
			}
			// The fourth batch's run waits until the writer has
			// committed the first two batches, so that the writer is
			// likely waiting for the batches after them, then stops the
			// job.
			select {
			case <-blocked:
			default:
				waitFor(t, func() bool { _, err := os.Stat(chunkName(partsDir(out), 1)); return err == nil })
				close(blocked)
			}
			<-ctx.Done()
			return nil, fmt.Errorf("run stopped: %w", ctx.Err())
		}}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-blocked
			cancel()
		}()
		_, err := Run(ctx, fakeLoader{model}, Config{Root: root, Model: "m", Input: in, Output: out, IDColumn: "id", BatchSize: 4, Workers: 1, CPUs: 1, ChunkRows: 4})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped job: %v", err)
		}
		for n := int64(0); ; n++ {
			cr, err := openChunk(chunkName(partsDir(out), n), []tensor.Spec{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{2}}}, nil)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var rec chunkRecord
			for cr.next(&rec) == nil {
				if rec.err {
					t.Fatalf("attempt %d: chunk %d holds record %d as failed: %s", i, n, rec.index+1, rec.reason)
				}
			}
			cr.close()
		}
	}
}

// testTimeout bounds a wait for something that must happen.
const testTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(testTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("timed out waiting")
		case <-tick.C:
		}
	}
}

// echoModel returns its FP32 INPUT [-1, -1] as OUT [-1, -1]: an output
// whose width follows the input's.
func echoModel() *servingtest.Model {
	return &servingtest.Model{
		In:  []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, -1}}},
		Out: []tensor.Spec{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{-1, -1}}},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			return []tensor.Tensor{{Name: "OUT", DataType: tensor.FP32, Shape: slices.Clone(in[0].Shape), Data: slices.Clone(in[0].Data)}}, nil
		},
	}
}

// TestScoreOutputError: rows a CSV header cannot hold (an output whose width
// changes) fail the job with an --output error and leave no output; JSON
// lines takes them.
func TestScoreOutputError(t *testing.T) {
	root := fakeRepo(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte("{\"INPUT\": [1, 2]}\n{\"INPUT\": [1, 2, 3]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loader := fakeLoader{echoModel()}
	out := filepath.Join(dir, "out.csv")
	_, err := Run(context.Background(), loader, Config{Root: root, Model: "m", Input: in, Output: out})
	if err == nil || !strings.Contains(err.Error(), "--output: ") || !strings.Contains(err.Error(), "the header has 2 columns") {
		t.Errorf("CSV of rows of two widths: %v", err)
	}
	for _, p := range []string{out, out + ".tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed job", p)
		}
	}
	out = filepath.Join(dir, "out.jsonl")
	if _, err := Run(context.Background(), loader, Config{Root: root, Model: "m", Input: in, Output: out}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "{\"OUT\":[1,2]}\n{\"OUT\":[1,2,3]}\n" {
		t.Errorf("JSON lines output %q", b)
	}
}
