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
	skip := done * int64(cfg.ChunkRows)
	if err := rd.Skip(skip); err != nil {
		return sum, fmt.Errorf("%w: the input holds fewer records than the chunks already done: %v", ErrResume, err)
	}
	sum.Resumed = skip
	if cfg.Progress != nil {
		cfg.Progress.Start(rd.Total(), skip)
		defer cfg.Progress.Finish()
	}
	j := &job{cfg: cfg, sess: sess, rd: rd, batch: batch, batching: batching, workers: workers, dir: partsDir(cfg.Output), chunk: done}
	if err := j.run(ctx); err != nil {
		return sum, err
	}
	rows, errs, err := assemble(cfg, outFormat, outputs)
	if err != nil {
		return sum, err
	}
	sum.Rows, sum.Errors, sum.Elapsed = rows, errs, time.Since(start)
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

// batch is a run of consecutive records within one chunk.
type batch struct {
	seq   int64
	last  bool // the last batch of its chunk
	rows  []dataset.Row
	outs  [][]tensor.Tensor // per row; nil where the row failed
	fails []string          // per row: why it failed
}

// job is one run of the pipeline: a reader goroutine forms batches,
// workers run them, the caller's goroutine writes them in order.
type job struct {
	cfg      Config
	sess     *serving.Session
	rd       dataset.Reader
	batch    int
	batching bool
	workers  int
	dir      string
	chunk    int64 // the next chunk to write
}

func (j *job) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
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
// boundary, and cut where the rows' shapes change.
func (j *job) read(ctx context.Context, todo chan<- *batch) error {
	var seq int64
	inChunk := 0
	cur := &batch{}
	var layout []tensor.Tensor
	send := func(last bool) error {
		cur.seq, cur.last = seq, last
		seq++
		select {
		case todo <- cur:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		cur, layout = &batch{}, nil
		return nil
	}
	for {
		row, err := j.rd.Next()
		if errors.Is(err, io.EOF) {
			if inChunk > 0 {
				return send(true)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("--input: %w", err)
		}
		if row.Err == nil {
			if layout != nil && !sameShapes(layout, row.Inputs) {
				if err := send(false); err != nil {
					return err
				}
			}
			if layout == nil {
				layout = row.Inputs
			}
		}
		cur.rows = append(cur.rows, row)
		inChunk++
		switch {
		case inChunk == j.cfg.ChunkRows:
			inChunk = 0
			if err := send(true); err != nil {
				return err
			}
		case len(cur.rows) == j.batch:
			if err := send(false); err != nil {
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
// so one bad row fails alone.
func (j *job) score(ctx context.Context, b *batch) {
	b.outs = make([][]tensor.Tensor, len(b.rows))
	b.fails = make([]string, len(b.rows))
	var good []int
	for i, r := range b.rows {
		if r.Err != nil {
			b.fails[i] = r.Err.Error()
		} else {
			good = append(good, i)
		}
	}
	if len(good) == 0 {
		return
	}
	if err := j.runRows(ctx, b, good); err != nil {
		if len(good) == 1 {
			b.fails[good[0]] = "inference failed: " + err.Error()
			return
		}
		for _, i := range good {
			if err := j.runRows(ctx, b, []int{i}); err != nil {
				b.fails[i] = "inference failed: " + err.Error()
			}
		}
	}
}

// runRows runs rows idx of b together and stores each row's outputs.
func (j *job) runRows(ctx context.Context, b *batch, idx []int) error {
	first := b.rows[idx[0]].Inputs
	in := make([]tensor.Tensor, len(first))
	n := int64(len(idx))
	for k, t := range first {
		if !j.batching {
			in[k] = t
			continue
		}
		size := 0
		for _, i := range idx {
			size += len(b.rows[i].Inputs[k].Data)
		}
		data := make([]byte, 0, size)
		for _, i := range idx {
			data = append(data, b.rows[i].Inputs[k].Data...)
		}
		in[k] = tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: append([]int64{n}, t.Shape...), Data: data}
	}
	out, err := j.sess.Run(ctx, in)
	if err != nil {
		return err
	}
	per := make([][]tensor.Tensor, len(idx))
	for k := range per {
		per[k] = make([]tensor.Tensor, len(out))
	}
	for o, t := range out {
		if !j.batching {
			per[0][o] = t
			continue
		}
		if len(t.Shape) == 0 || t.Shape[0] != n {
			return fmt.Errorf("output %q has shape %v for %d rows", t.Name, t.Shape, n)
		}
		ones := make([]int64, n)
		for k := range ones {
			ones[k] = 1
		}
		parts, err := tensor.Split(t, ones)
		if err != nil {
			return err
		}
		for k, p := range parts {
			p.Shape = p.Shape[1:]
			per[k][o] = p
		}
	}
	for k, i := range idx {
		b.outs[i] = per[k]
	}
	return nil
}

// write takes scored batches in any order and writes them in order into
// chunk files, committing each chunk at its last batch.
func (j *job) write(ctx context.Context, done <-chan *batch) error {
	pending := map[int64]*batch{}
	var next int64
	var cw *chunkWriter
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
			if cw == nil {
				var err error
				if cw, err = newChunkWriter(j.dir, j.chunk); err != nil {
					return err
				}
			}
			for i, r := range b.rows {
				if b.outs[i] == nil {
					if j.cfg.FailFast {
						return fmt.Errorf("%w: record %d (line %d): %s", ErrRowFailed, r.Index+1, r.Line, b.fails[i])
					}
					if err := cw.failure(r.Index, r.Line, b.fails[i]); err != nil {
						return err
					}
					continue
				}
				if err := cw.result(r.ID, b.outs[i]); err != nil {
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
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return nil
}

// assemble streams every chunk, in order, into the output file and the
// errors file, each written beside its final name and renamed into place,
// then removes the parts folder.
func assemble(cfg Config, f dataset.Format, outputs []tensor.Spec) (rows, errs int64, err error) {
	dir := partsDir(cfg.Output)
	var chunks []string
	for n := int64(0); ; n++ {
		p := chunkName(dir, n)
		r, e, err := chunkCounts(p)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		rows += int64(r)
		errs += int64(e)
		chunks = append(chunks, p)
	}
	outTmp, errTmp := cfg.Output+".tmp", ErrorsPath(cfg.Output)+".tmp"
	of, err := os.Create(outTmp)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		of.Close()
		if err != nil {
			os.Remove(outTmp)
			os.Remove(errTmp)
		}
	}()
	w, err := dataset.NewWriter(of, f, dataset.WriteOptions{Outputs: outputs, IDColumn: cfg.IDColumn, Rows: rows})
	if err != nil {
		return 0, 0, err
	}
	var ef *os.File
	var ew *bufio.Writer
	if errs > 0 {
		if ef, err = os.Create(errTmp); err != nil {
			return 0, 0, err
		}
		defer ef.Close()
		ew = bufio.NewWriter(ef)
	}
	var rec chunkRecord
	for _, p := range chunks {
		cr, err := openChunk(p, outputs)
		if err != nil {
			return 0, 0, err
		}
		for {
			err := cr.next(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				cr.close()
				return 0, 0, fmt.Errorf("%s: %w", p, err)
			}
			if rec.err {
				line, _ := json.Marshal(struct {
					Record int64  `json:"record"`
					Line   int64  `json:"line,omitempty"`
					Error  string `json:"error"`
				}{rec.index + 1, rec.line, rec.reason})
				ew.Write(append(line, '\n'))
				continue
			}
			if err := w.Write(rec.id, rec.outs); err != nil {
				cr.close()
				return 0, 0, fmt.Errorf("--output: %w", err)
			}
		}
		cr.close()
	}
	if err := w.Close(); err != nil {
		return 0, 0, err
	}
	if err := of.Sync(); err != nil {
		return 0, 0, err
	}
	if ew != nil {
		if err := ew.Flush(); err != nil {
			return 0, 0, err
		}
		if err := ef.Sync(); err != nil {
			return 0, 0, err
		}
		if err := os.Rename(errTmp, ErrorsPath(cfg.Output)); err != nil {
			return 0, 0, err
		}
	} else if err := os.Remove(ErrorsPath(cfg.Output)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, err
	}
	if err := os.Rename(outTmp, cfg.Output); err != nil {
		return 0, 0, err
	}
	if err := syncDir(filepath.Dir(cfg.Output)); err != nil {
		return 0, 0, err
	}
	return rows, errs, os.RemoveAll(dir)
}
