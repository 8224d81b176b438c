package score

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Defaults of Config.
const (
	// DefaultBatchSize is the rows per run with BatchSize 0 (auto) for a
	// model with a batch dimension: large enough that per-run overhead
	// vanishes, small enough that a batch of wide rows stays in cache.
	DefaultBatchSize = 256
	// DefaultChunkRows is the input records per checkpointed chunk.
	DefaultChunkRows = 65536
)

// Errors the command maps to messages and exit codes.
var (
	// ErrOutputExists: the output is there and neither Resume nor
	// Overwrite was asked for.
	ErrOutputExists = errors.New("output exists")
	// ErrModel: unknown model or version, or one that cannot load.
	ErrModel = errors.New("model")
	// ErrResume: the partial run on disk was started with other settings.
	ErrResume = errors.New("cannot resume")
	// ErrRowFailed: a row failed under FailFast.
	ErrRowFailed = errors.New("row failed")
)

// Config is one scoring job.
type Config struct {
	Root    string // model repository
	Model   string
	Version string // "" for the newest version the policy serves
	Input   string
	Output  string
	// Columns and IDColumn select the input's columns (dataset.ReadOptions).
	Columns  []string
	IDColumn string
	// BatchSize is rows per run; 0 picks DefaultBatchSize (1 for a model
	// without a batch dimension).
	BatchSize int
	// Workers is the runs in flight at once; 0 picks CPUs. Each run gets
	// CPUs/Workers intra-op threads (at least 1).
	Workers int
	// CPUs is how many CPUs the process may use (cmd/serve passes
	// runtime.AvailableCPUs). [1]
	CPUs int
	// ChunkRows is input records per checkpoint. [DefaultChunkRows]
	ChunkRows int
	Resume    bool
	Overwrite bool
	FailFast  bool
	// Progress, when not nil, is told of progress as rows complete.
	Progress Progress
}

// Progress receives the job's progress. Calls come from one goroutine.
type Progress interface {
	// Start announces the total records (-1 unknown) and those already
	// done by an earlier run.
	Start(total, done int64)
	// Add reports n more records done.
	Add(n int64)
	// Finish ends the display.
	Finish()
}

// Summary is the outcome of a finished job.
type Summary struct {
	Model, Version string
	Rows           int64 // output rows written
	Errors         int64 // bad rows, in the errors file
	Resumed        int64 // records done by an earlier run
	Elapsed        time.Duration
	BatchSize      int
	Workers        int
	Threads        int
}

// ErrorsPath is where the bad rows of output go.
func ErrorsPath(output string) string { return output + ".errors.jsonl" }

// partsDir is where the chunks of an unfinished run live.
func partsDir(output string) string { return output + ".parts" }

// manifest identifies a run, so a resume continues the same job.
type manifest struct {
	Model     string   `json:"model"`
	Version   int64    `json:"version"`
	Input     string   `json:"input"`
	InputSize int64    `json:"input_size"`
	InputTime int64    `json:"input_mtime_ns"`
	Columns   []string `json:"columns"`
	IDColumn  string   `json:"id_column"`
	BatchSize int      `json:"batch_size"`
	ChunkRows int      `json:"chunk_rows"`
}

// Run scores cfg.Input into cfg.Output with loader l.
func Run(ctx context.Context, l serving.Loader, cfg Config) (sum Summary, err error) {
	start := time.Now()
	inFormat, err := dataset.FormatOf(cfg.Input)
	if err != nil {
		return sum, err
	}
	outFormat, err := dataset.FormatOf(cfg.Output)
	if err != nil {
		return sum, err
	}
	_ = inFormat
	if cfg.ChunkRows <= 0 {
		cfg.ChunkRows = DefaultChunkRows
	}
	cfg.CPUs = max(cfg.CPUs, 1)
	if _, err := os.Stat(cfg.Output); err == nil && !cfg.Overwrite {
		if cfg.Resume {
			return sum, fmt.Errorf("%w: %s is complete; nothing to resume (--overwrite to score again)", ErrOutputExists, cfg.Output)
		}
		return sum, fmt.Errorf("%w: %s (--overwrite replaces it, --resume continues an interrupted run)", ErrOutputExists, cfg.Output)
	}
	inStat, err := os.Stat(cfg.Input)
	if err != nil {
		return sum, fmt.Errorf("--input: %w", err)
	}

	m, err := repository.ScanModel(cfg.Root, cfg.Model)
	if err != nil {
		return sum, fmt.Errorf("%w %q: %v", ErrModel, cfg.Model, err)
	}
	ver, err := pickVersion(m, cfg.Version)
	if err != nil {
		return sum, err
	}
	mcfg := m.Config.Clone()
	batching := mcfg.MaxBatchSize > 0
	batch := cfg.BatchSize
	switch {
	case !batching:
		batch = 1
	case batch <= 0:
		batch = DefaultBatchSize
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = cfg.CPUs
	}
	threads := max(cfg.CPUs/workers, 1)
	mcfg.Instances.Count = workers
	mcfg.Instances.IntraOpThreads = threads
	mcfg.Instances.InterOpThreads = 1
	sess, err := serving.Open(ctx, l, m, ver, mcfg)
	if err != nil {
		return sum, fmt.Errorf("%w: %v", ErrModel, err)
	}
	defer func() { err = errors.Join(err, sess.Close()) }()
	sum = Summary{Model: m.Name, Version: strconv.FormatInt(ver.Number, 10), BatchSize: batch, Workers: workers, Threads: threads}

	inputs, outputs := rowSpecs(sess.Inputs(), batching), rowSpecs(sess.Outputs(), batching)
	absIn, _ := filepath.Abs(cfg.Input)
	man := manifest{Model: m.Name, Version: ver.Number, Input: absIn, InputSize: inStat.Size(), InputTime: inStat.ModTime().UnixNano(),
		Columns: cfg.Columns, IDColumn: cfg.IDColumn, BatchSize: batch, ChunkRows: cfg.ChunkRows}
	// Fail on an output that cannot hold these rows before any work.
	if _, err := dataset.NewWriter(io.Discard, outFormat, dataset.WriteOptions{Outputs: outputs, IDColumn: cfg.IDColumn}); err != nil {
		return sum, fmt.Errorf("--output: %w", err)
	}
	done, err := preparePart(cfg, man)
	if err != nil {
		return sum, err
	}
	rd, err := dataset.Open(cfg.Input, dataset.ReadOptions{Inputs: inputs, Batched: batching, Columns: cfg.Columns, IDColumn: cfg.IDColumn})
	if err != nil {
		return sum, fmt.Errorf("--input: %w", err)
	}
	defer rd.Close()
	// The records the chunks done hold: the last chunk of a job that
	// stopped after all of them (before its output was renamed into
	// place) holds fewer than ChunkRows.
	skip, err := countRecords(partsDir(cfg.Output), done)
	if err != nil {
		return sum, fmt.Errorf("%w: %v", ErrResume, err)
	}
	if err := rd.Skip(skip); err != nil {
		return sum, fmt.Errorf("%w: the input holds fewer records than the chunks already done: %v", ErrResume, err)
	}
	sum.Resumed = skip
	if cfg.Progress != nil {
		cfg.Progress.Start(rd.Total(), skip)
		defer cfg.Progress.Finish()
	}
	// The output is written while rows are scored, after the rows of the
	// chunks an earlier run completed, so no second pass reads the chunks
	// back. NPY cannot stream: its header counts the rows, known only at
	// the end, so it is written from the chunks then.
	dir := partsDir(cfg.Output)
	var out *sink
	defer func() {
		if out != nil {
			out.abort()
		}
	}()
	if outFormat != dataset.NPY {
		if out, err = openSink(cfg.Output, outFormat, outputs, cfg.IDColumn, 0); err != nil {
			return sum, err
		}
		if err := out.replay(dir, 0, done); err != nil {
			return sum, err
		}
	}
	j := &job{cfg: cfg, sess: sess, rd: rd, batch: batch, batching: batching, workers: workers, dir: dir, chunk: done, out: out}
	if err := j.run(ctx); err != nil {
		return sum, err
	}
	if out == nil {
		rows, err := countResults(dir, j.chunk)
		if err != nil {
			return sum, err
		}
		if out, err = openSink(cfg.Output, outFormat, outputs, cfg.IDColumn, rows); err != nil {
			return sum, err
		}
		if err := out.replay(dir, 0, j.chunk); err != nil {
			return sum, err
		}
	}
	if err := out.commit(); err != nil {
		return sum, err
	}
	sum.Rows, sum.Errors = out.rows, out.errs
	out = nil
	if err := os.RemoveAll(dir); err != nil {
		return sum, err
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// pickVersion finds the version to score: the one named, which the
// policy must serve, or the newest the policy serves.
func pickVersion(m repository.Model, want string) (repository.Version, error) {
	if m.Err != nil {
		return repository.Version{}, fmt.Errorf("%w %q: config.yaml: %v", ErrModel, m.Name, m.Err)
	}
	if len(m.Selected) == 0 {
		return repository.Version{}, fmt.Errorf("%w %q: no version to serve", ErrModel, m.Name)
	}
	n := m.Selected[len(m.Selected)-1]
	if want != "" {
		v, ok := repository.ParseVersion(want)
		if !ok || !slices.Contains(m.Selected, v) {
			return repository.Version{}, fmt.Errorf("%w %q: version %q not found (served: %v)", ErrModel, m.Name, want, m.Selected)
		}
		n = v
	}
	for _, v := range m.Versions {
		if v.Number == n {
			return v, nil
		}
	}
	return repository.Version{}, fmt.Errorf("%w %q: version %d not found", ErrModel, m.Name, n)
}

// rowSpecs drops the batch dimension, as one row sees the model.
func rowSpecs(specs []tensor.Spec, batching bool) []tensor.Spec {
	out := make([]tensor.Spec, len(specs))
	for i, s := range specs {
		out[i] = s
		if batching && len(s.Shape) > 0 {
			out[i].Shape = s.Shape[1:]
		}
	}
	return out
}

// preparePart sets up the parts folder and returns the chunks already
// complete: 0 for a fresh run, those of the same job for a resume.
func preparePart(cfg Config, man manifest) (int64, error) {
	dir := partsDir(cfg.Output)
	manPath := filepath.Join(dir, "job.json")
	want, err := json.Marshal(man)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(dir); err == nil {
		if !cfg.Resume {
			if !cfg.Overwrite {
				return 0, fmt.Errorf("%w: an interrupted run left %s (--resume continues it, --overwrite starts again)", ErrOutputExists, dir)
			}
			if err := os.RemoveAll(dir); err != nil {
				return 0, err
			}
		} else {
			have, err := os.ReadFile(manPath)
			if err != nil {
				return 0, fmt.Errorf("%w: %v", ErrResume, err)
			}
			if string(have) != string(want) {
				return 0, fmt.Errorf("%w: %s was started with other settings or another input (%s; now %s)", ErrResume, dir, have, want)
			}
			var n int64
			for {
				if _, err := os.Stat(chunkName(dir, n)); err != nil {
					break
				}
				n++
			}
			return n, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if err := writeAtomic(manPath, want); err != nil {
		return 0, err
	}
	return 0, nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// rowInfo is one record of a batch: where it came from and, once the
// batch is scored, which run holds its outputs or why it failed.
type rowInfo struct {
	index, line int64
	id          string
	failed      bool
	reason      string // why the row failed
	run, k      int    // a good row's outputs: row k of batch.runs[run]
	// enc is where a good row's encoding ends in batch.enc, when the
	// workers encode; encErr is why it could not be encoded.
	enc    int
	encErr error
}

// run is one ONNX Runtime run of some of a batch's good rows: views holds
// row k's outputs at [k*outputs, (k+1)*outputs), views into the run's
// output tensors (no copy).
type run struct {
	views []tensor.Tensor
}

// batch is a run of consecutive records within one chunk. Batches are
// recycled (job.free), so their buffers stop growing once the first few
// batches have sized them: no allocation per row.
type batch struct {
	seq  int64
	last bool // the last batch of its chunk
	rows []rowInfo
	// in holds, per input, the good rows' data back to back, as the
	// reader appended it; ends[g*len(in)+k] is where good row g's data of
	// input k ends.
	in   [][]byte
	ends []int
	// good lists the good rows (indexes into rows); layout is their
	// inputs' names, types and row shapes (Data unused).
	good   []int
	layout []tensor.Tensor
	runs   []run
	// enc holds the good rows' output lines, encoded by the worker that
	// ran them (job.enc), back to back.
	enc []byte
	// views and split are scratch of the batch's run; mark holds the
	// lengths of in before the row being read.
	views, split []tensor.Tensor
	mark         []int
}

// reset empties b for reuse, dropping its references to output tensors
// so the free list keeps no outputs alive.
func (b *batch) reset() {
	b.seq, b.last = 0, false
	clear(b.rows)
	b.rows = b.rows[:0]
	for k := range b.in {
		b.in[k] = b.in[k][:0]
	}
	b.ends, b.good, b.layout = b.ends[:0], b.good[:0], b.layout[:0]
	clear(b.runs)
	b.runs = b.runs[:0]
	b.enc = b.enc[:0]
	clear(b.views)
	clear(b.split)
}

// job is one run of the pipeline: a reader goroutine forms batches,
// workers run them, the caller's goroutine writes them in order to the
// chunk files (for --resume) and, unless out is nil, to the output.
type job struct {
	cfg      Config
	sess     *serving.Session
	rd       dataset.Reader
	batch    int
	batching bool
	workers  int
	inputs   int // the model's inputs
	outputs  int // the model's outputs
	dir      string
	chunk    int64 // the next chunk to write
	out      *sink
	// enc, when not nil, is out's row encoder: the workers encode the
	// rows they ran, in parallel, and the writer only writes the bytes.
	enc  dataset.RowEncoder
	ones []int64 // batch ones, the row counts of a split into rows
	free chan *batch
}

// newBatch returns an empty batch, recycled when one is free.
func (j *job) newBatch() *batch {
	select {
	case b := <-j.free:
		return b
	default:
		return &batch{in: make([][]byte, j.inputs), mark: make([]int, j.inputs)}
	}
}

// recycle hands a written batch back for reuse.
func (j *job) recycle(b *batch) {
	b.reset()
	select {
	case j.free <- b:
	default:
	}
}

func (j *job) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	j.inputs, j.outputs = len(j.sess.Inputs()), len(j.sess.Outputs())
	if j.out != nil {
		j.enc, _ = j.out.w.(dataset.RowEncoder)
	}
	j.ones = make([]int64, j.batch)
	for i := range j.ones {
		j.ones[i] = 1
	}
	// Batches in flight: the two queues, one in each worker, one being
	// read and one being written.
	j.free = make(chan *batch, 5*j.workers+2)
	todo := make(chan *batch, 2*j.workers)
	doneCh := make(chan *batch, 2*j.workers)
	var wg sync.WaitGroup
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(todo)
		readErr = j.read(ctx, todo)
		if readErr != nil {
			cancel(readErr)
		}
	}()
	var workers sync.WaitGroup
	for range j.workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for b := range todo {
				j.score(ctx, b)
				select {
				case doneCh <- b:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() { workers.Wait(); close(doneCh) }()
	werr := j.write(ctx, doneCh)
	if werr != nil {
		cancel(werr)
	}
	// Drain so every goroutine ends before Run returns.
	for range doneCh {
	}
	wg.Wait()
	if werr != nil {
		return werr
	}
	if readErr != nil {
		return readErr
	}
	return context.Cause(ctx)
}

// read forms batches: at most j.batch records, never across a chunk
// boundary, and cut where the rows' shapes change. Each record's data is
// appended by the reader straight onto its batch's buffers.
func (j *job) read(ctx context.Context, todo chan<- *batch) error {
	var seq int64
	inChunk := 0
	cur := j.newBatch()
	send := func(last bool, next *batch) error {
		cur.seq, cur.last = seq, last
		seq++
		select {
		case todo <- cur:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		cur = next
		return nil
	}
	for {
		for k, b := range cur.in {
			cur.mark[k] = len(b)
		}
		row, err := j.rd.NextAppend(cur.in)
		if errors.Is(err, io.EOF) {
			if inChunk > 0 {
				return send(true, nil)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("--input: %w", err)
		}
		if row.Err == nil {
			if len(cur.good) > 0 && !sameShapes(cur.layout, row.Inputs) {
				// The row starts the next batch: move its data there.
				next := j.newBatch()
				for k := range cur.in {
					next.in[k] = append(next.in[k], cur.in[k][cur.mark[k]:]...)
					cur.in[k] = cur.in[k][:cur.mark[k]]
				}
				if err := send(false, next); err != nil {
					return err
				}
			}
			if len(cur.good) == 0 {
				for k, t := range row.Inputs {
					cur.layout = append(cur.layout, tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: t.Shape})
					// Size a new buffer for a whole batch of rows like
					// this one at once, rather than doubling it (and
					// copying, and touching fresh pages) as it fills.
					if want := j.batch * len(t.Data); cap(cur.in[k]) < want {
						cur.in[k] = slices.Grow(cur.in[k], want-len(cur.in[k]))
					}
				}
			}
			for _, b := range cur.in {
				cur.ends = append(cur.ends, len(b))
			}
			cur.good = append(cur.good, len(cur.rows))
		}
		info := rowInfo{index: row.Index, line: row.Line, id: row.ID}
		if row.Err != nil {
			info.failed, info.reason = true, row.Err.Error()
		}
		cur.rows = append(cur.rows, info)
		inChunk++
		switch {
		case inChunk == j.cfg.ChunkRows:
			inChunk = 0
			if err := send(true, j.newBatch()); err != nil {
				return err
			}
		case len(cur.rows) == j.batch:
			if err := send(false, j.newBatch()); err != nil {
				return err
			}
		}
	}
}

func sameShapes(a, b []tensor.Tensor) bool {
	for i := range a {
		if !slices.Equal(a[i].Shape, b[i].Shape) {
			return false
		}
	}
	return true
}

// score runs a batch's good rows as one run; if that fails, row by row,
// so one bad row fails alone. Then it encodes the rows that have outputs
// when the workers encode.
func (j *job) score(ctx context.Context, b *batch) {
	n := len(b.good)
	if n == 0 {
		return
	}
	err := j.runRows(ctx, b, 0, n)
	switch {
	case err == nil:
	case n == 1:
		b.rows[b.good[0]].failed, b.rows[b.good[0]].reason = true, "inference failed: "+err.Error()
	default:
		for g := range n {
			if err := j.runRows(ctx, b, g, g+1); err != nil {
				b.rows[b.good[g]].failed, b.rows[b.good[g]].reason = true, "inference failed: "+err.Error()
			}
		}
	}
	if j.enc == nil {
		return
	}
	for _, i := range b.good {
		r := &b.rows[i]
		if r.failed {
			continue
		}
		b.enc, r.encErr = j.enc.AppendRow(b.enc, r.id, j.rowOutputs(b, r))
		r.enc = len(b.enc)
	}
}

// rowOutputs returns a good row's outputs, views into its run's.
func (j *job) rowOutputs(b *batch, r *rowInfo) []tensor.Tensor {
	return b.runs[r.run].views[r.k*j.outputs : (r.k+1)*j.outputs]
}

// runRows runs good rows [g0, g1) of b together and records where each
// row's outputs are.
func (j *job) runRows(ctx context.Context, b *batch, g0, g1 int) error {
	n := g1 - g0
	in := make([]tensor.Tensor, len(b.layout))
	for k, l := range b.layout {
		start := 0
		if g0 > 0 {
			start = b.ends[(g0-1)*j.inputs+k]
		}
		data := b.in[k][start:b.ends[(g1-1)*j.inputs+k]]
		shape := l.Shape
		if j.batching {
			shape = append([]int64{int64(n)}, l.Shape...)
		}
		in[k] = tensor.Tensor{Name: l.Name, DataType: l.DataType, Shape: shape, Data: data}
	}
	out, err := j.sess.Run(ctx, in)
	if err != nil {
		return err
	}
	var views []tensor.Tensor
	if n == len(b.good) {
		// The whole batch in one run: the batch's own scratch.
		b.views = slices.Grow(b.views[:0], n*j.outputs)[:n*j.outputs]
		views = b.views
	} else {
		views = make([]tensor.Tensor, n*j.outputs)
	}
	for o, t := range out {
		if !j.batching {
			views[o] = t
			continue
		}
		if len(t.Shape) == 0 || t.Shape[0] != int64(n) {
			return fmt.Errorf("output %q has shape %v for %d rows", t.Name, t.Shape, n)
		}
		b.split = slices.Grow(b.split[:0], n)[:n]
		if err := tensor.SplitInto(b.split, t, j.ones[:n]); err != nil {
			return err
		}
		for k, p := range b.split {
			p.Shape = p.Shape[1:]
			views[k*j.outputs+o] = p
		}
	}
	b.runs = append(b.runs, run{views: views})
	for g := g0; g < g1; g++ {
		r := &b.rows[b.good[g]]
		r.run, r.k = len(b.runs)-1, g-g0
	}
	return nil
}

// write takes scored batches in any order and writes them in order into
// chunk files, committing each chunk at its last batch, and into the
// output when it streams.
func (j *job) write(ctx context.Context, done <-chan *batch) error {
	pending := map[int64]*batch{}
	var next int64
	var cw *chunkWriter
	cwBuf := bufio.NewWriterSize(nil, 1<<20) // every chunk's write buffer
	defer func() {
		if cw != nil {
			cw.abort()
		}
	}()
	for b := range done {
		pending[b.seq] = b
		for {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			// A batch scored while the job was stopping may hold runs
			// the stop cut short, failed rows that are not the rows'
			// fault: nothing more is written, let alone committed as
			// done for --resume to skip.
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if cw == nil {
				var err error
				if cw, err = newChunkWriter(j.dir, j.chunk, cwBuf); err != nil {
					return err
				}
			}
			encStart := 0
			for i := range b.rows {
				r := &b.rows[i]
				if r.failed {
					if j.cfg.FailFast {
						return fmt.Errorf("%w: record %d (line %d): %s", ErrRowFailed, r.index+1, r.line, r.reason)
					}
					if err := cw.failure(r.index, r.line, r.reason); err != nil {
						return err
					}
					if j.out != nil {
						if err := j.out.failure(r.index, r.line, r.reason); err != nil {
							return err
						}
					}
					continue
				}
				outs := j.rowOutputs(b, r)
				if err := cw.result(r.id, outs); err != nil {
					return err
				}
				var err error
				switch {
				case j.enc != nil:
					err = j.out.resultEncoded(b.enc[encStart:r.enc], r.encErr, outs)
					encStart = r.enc
				case j.out != nil:
					err = j.out.result(r.id, outs)
				}
				if err != nil {
					return err
				}
			}
			if b.last {
				if err := cw.commit(); err != nil {
					return err
				}
				cw = nil
				j.chunk++
			}
			if j.cfg.Progress != nil {
				j.cfg.Progress.Add(int64(len(b.rows)))
			}
			j.recycle(b)
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return nil
}
