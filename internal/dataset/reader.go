package dataset

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Format is a data file format, named by the file's extension.
type Format string

// The formats. JSON lines is read and written as .jsonl (or .ndjson).
const (
	JSONL   Format = "jsonl"
	CSV     Format = "csv"
	NPY     Format = "npy"
	Parquet Format = "parquet"
)

// ErrFormat marks a file that is not what its format says, or a format
// that cannot hold what is asked of it; the whole job stops.
var ErrFormat = errors.New("bad data file")

// FormatOf returns the format a path's extension names.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return JSONL, nil
	case ".csv":
		return CSV, nil
	case ".npy":
		return NPY, nil
	case ".parquet":
		return Parquet, nil
	}
	return "", fmt.Errorf("%s: unknown format: want a .jsonl, .csv, .npy or .parquet file", path)
}

// ReadOptions say how records become rows.
type ReadOptions struct {
	// Inputs are the model's inputs as one row sees them: without the
	// batch dimension when the model batches. A -1 dimension is taken
	// from the data.
	Inputs []tensor.Spec
	// Batched says that a v2 "inputs" object on a JSON line carries the
	// batch dimension, which must then be 1.
	Batched bool
	// Columns selects, in order, the CSV or Parquet columns that make up
	// the one input's row; empty means every column but IDColumn.
	Columns []string
	// IDColumn names a column (a key of each JSON line) whose value is
	// carried to the output as the row's id; "" for none.
	IDColumn string
}

// Row is one record of an input file. Err, when not nil, says why the
// record cannot be scored (a malformed line, a value of the wrong type);
// such a row has no Inputs, and reading goes on.
type Row struct {
	// Index counts records from 0 in file order, bad ones included.
	Index int64
	// Line is the 1-based line of a JSON lines or CSV record; 0 for NPY and
	// Parquet, where Index says where the record is.
	Line int64
	// ID is the value of the id column as text; "" without one.
	ID string
	// Inputs are one row of each model input, in the order of
	// ReadOptions.Inputs, shaped as those specs with -1 filled in.
	Inputs []tensor.Tensor
	Err    error
}

// Reader reads a data file one record at a time. Not safe for concurrent
// use.
type Reader interface {
	// Next returns the next record, or io.EOF after the last. An error
	// other than io.EOF is fatal (the file cannot be read on); a bad
	// record comes back as a Row with Err set. The Row and its data are
	// the caller's.
	Next() (Row, error)
	// NextAppend is Next without a fresh buffer per record: it appends
	// the data of input k (in the order of ReadOptions.Inputs) to bufs[k],
	// updating bufs in place, and Row.Inputs[k].Data is the appended part.
	// On a bad record or an error bufs keep their lengths on entry. The
	// Row.Inputs slice is the reader's and is reused by the next call;
	// its Shape slices are never changed afterwards, so they may be kept.
	// score stacks the rows of a batch this way, with one copy from the
	// file into the batch.
	NextAppend(bufs [][]byte) (Row, error)
	// Skip passes over n records without decoding them where the format
	// allows; it returns io.ErrUnexpectedEOF when the file holds fewer.
	Skip(n int64) error
	// Total is the number of records in the file, or an estimate (lines
	// for the text formats); -1 when unknown.
	Total() int64
	Close() error
}

// Open opens a data file for reading in the format its extension names.
// Errors about the file as a whole (unreadable, malformed header, columns
// that do not fit the model's input) come back here, or from Next.
func Open(path string, opt ReadOptions) (Reader, error) {
	f, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	switch f {
	case JSONL:
		return openJSONL(path, opt)
	case CSV:
		return openCSV(path, opt)
	case NPY:
		return openNPY(path, opt)
	default:
		return openParquet(path, opt)
	}
}

// fitShape fills the -1 dimensions of spec for n elements: with none, the
// spec must hold exactly n; with one, it takes what n leaves; more than one
// cannot be told from a flat count.
func fitShape(spec tensor.Spec, n int64) ([]int64, error) {
	shape := make([]int64, len(spec.Shape))
	fixed, free := int64(1), -1
	for i, d := range spec.Shape {
		shape[i] = d
		switch {
		case d >= 0:
			fixed *= d
		case free >= 0:
			return nil, fmt.Errorf("input %q has shape %v: more than one dimension to infer from %d values a row", spec.Name, spec.Shape, n)
		default:
			free = i
		}
	}
	if free < 0 {
		if fixed != n {
			return nil, fmt.Errorf("input %q takes %d values a row (shape %v), got %d", spec.Name, fixed, spec.Shape, n)
		}
		return shape, nil
	}
	if fixed == 0 || n%fixed != 0 {
		return nil, fmt.Errorf("input %q (shape %v) cannot hold %d values a row", spec.Name, spec.Shape, n)
	}
	shape[free] = n / fixed
	return shape, nil
}

// oneInput returns the only input of opt, for the formats that fill one.
func oneInput(opt ReadOptions, format Format) (tensor.Spec, error) {
	if len(opt.Inputs) != 1 {
		names := make([]string, len(opt.Inputs))
		for i, s := range opt.Inputs {
			names[i] = s.Name
		}
		return tensor.Spec{}, fmt.Errorf("%w: a %s file fills one input; the model has %d (%s): use JSON lines", ErrFormat, format, len(opt.Inputs), strings.Join(names, ", "))
	}
	return opt.Inputs[0], nil
}

// nextOwned implements Next with NextAppend: fresh buffers and a Row
// whose Inputs the caller owns.
func nextOwned(r Reader, inputs int) (Row, error) {
	row, err := r.NextAppend(make([][]byte, inputs))
	row.Inputs = slices.Clone(row.Inputs)
	return row, err
}

// skipNext implements Skip with Next, for formats without a faster way.
func skipNext(r interface{ Next() (Row, error) }, n int64) error {
	for range n {
		if _, err := r.Next(); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
