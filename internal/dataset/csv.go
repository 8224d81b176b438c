package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// csvReader reads a CSV file with a header line: the selected columns of
// each line, in order, are one row of the model's one input.
type csvReader struct {
	f      *os.File
	r      *csv.Reader
	spec   tensor.Spec
	shape  []int64
	cols   []int // field index of each selected column
	idCol  int   // -1 without one
	header []string
	index  int64
	total  int64
	in     [1]tensor.Tensor // NextAppend's Row.Inputs
}

func openCSV(path string, opt ReadOptions) (_ Reader, err error) {
	spec, err := oneInput(opt, CSV)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	total, err := countLines(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cr := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: empty, want a header line", ErrFormat, path)
		}
		return nil, fmt.Errorf("%w: %s: header: %v", ErrFormat, path, err)
	}
	header = slices.Clone(header)
	r := &csvReader{f: f, r: cr, spec: spec, idCol: -1, header: header, total: max(total-1, 0)}
	find := func(name string) (int, error) {
		i := slices.Index(header, name)
		if i < 0 {
			return 0, fmt.Errorf("%w: %s: no column %q in the header", ErrFormat, path, name)
		}
		return i, nil
	}
	if opt.IDColumn != "" {
		if r.idCol, err = find(opt.IDColumn); err != nil {
			return nil, err
		}
	}
	if len(opt.Columns) > 0 {
		for _, c := range opt.Columns {
			i, err := find(c)
			if err != nil {
				return nil, err
			}
			r.cols = append(r.cols, i)
		}
	} else {
		for i := range header {
			if i != r.idCol {
				r.cols = append(r.cols, i)
			}
		}
	}
	if r.shape, err = fitShape(spec, int64(len(r.cols))); err != nil {
		return nil, fmt.Errorf("%w: %s: %d columns: %v", ErrFormat, path, len(r.cols), err)
	}
	cr.FieldsPerRecord = len(header)
	return r, nil
}

func (r *csvReader) Total() int64 { return r.total }
func (r *csvReader) Close() error { return r.f.Close() }
func (r *csvReader) Skip(n int64) error {
	for range n {
		if _, err := r.r.Read(); err != nil && !isRecordError(err) {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		r.index++
	}
	return nil
}

// isRecordError tells a malformed line, after which reading goes on, from
// a failure to read the file.
func isRecordError(err error) bool {
	var pe *csv.ParseError
	return errors.As(err, &pe)
}

func (r *csvReader) Next() (Row, error) { return nextOwned(r, 1) }

func (r *csvReader) NextAppend(bufs [][]byte) (Row, error) {
	rec, err := r.r.Read()
	row := Row{Index: r.index}
	line, _ := r.r.FieldPos(0)
	row.Line = int64(line)
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return Row{}, err
		}
		r.index++
		row.Line = int64(pe.StartLine)
		row.Err = errors.New(pe.Err.Error())
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			row.Err = fmt.Errorf("%d fields, the header has %d", len(rec), r.r.FieldsPerRecord)
		}
		return row, nil
	}
	r.index++
	if r.idCol >= 0 {
		row.ID = rec[r.idCol]
	}
	// data grows bufs[0] in place; bufs[0] takes its new length only
	// once the row is good.
	start := len(bufs[0])
	data := slices.Grow(bufs[0], len(r.cols)*max(r.spec.DataType.Size(), 4))
	for _, c := range r.cols {
		if data, err = appendText(data, r.spec.DataType, rec[c]); err != nil {
			row.Err = fmt.Errorf("column %q: %w", r.header[c], err)
			return row, nil
		}
	}
	bufs[0] = data
	r.in[0] = tensor.Tensor{Name: r.spec.Name, DataType: r.spec.DataType, Shape: r.shape, Data: data[start:]}
	row.Inputs = r.in[:]
	return row, nil
}
