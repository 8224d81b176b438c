package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// countLines counts the newlines of a file, for the text formats' Total.
func countLines(f *os.File) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	_, err := f.Seek(0, io.SeekStart)
	return n, err
}

// jsonlReader reads one record per line: either {"inputs": [v2 tensors]}
// or {"INPUT": data, ...} keyed by input name. Blank lines are skipped.
type jsonlReader struct {
	f      *os.File
	r      *bufio.Reader
	opt    ReadOptions
	line   int64
	index  int64
	total  int64
	byName map[string]int
}

func openJSONL(path string, opt ReadOptions) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	total, err := countLines(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &jsonlReader{f: f, r: bufio.NewReaderSize(f, 1<<20), opt: opt, total: total, byName: map[string]int{}}
	for i, s := range opt.Inputs {
		r.byName[s.Name] = i
	}
	return r, nil
}

func (r *jsonlReader) Total() int64 { return r.total }
func (r *jsonlReader) Close() error { return r.f.Close() }

// readLine returns the next non-blank line.
func (r *jsonlReader) readLine() ([]byte, error) {
	for {
		b, err := r.r.ReadBytes('\n')
		if len(b) == 0 && err != nil {
			return nil, err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		r.line++
		if len(bytes.TrimSpace(b)) > 0 {
			return b, nil
		}
	}
}

func (r *jsonlReader) Skip(n int64) error {
	for range n {
		if _, err := r.readLine(); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		r.index++
	}
	return nil
}

func (r *jsonlReader) Next() (Row, error) {
	b, err := r.readLine()
	if err != nil {
		return Row{}, err
	}
	row := Row{Index: r.index, Line: r.line}
	r.index++
	row.ID, row.Inputs, row.Err = r.parse(b)
	if row.Err != nil {
		row.Inputs = nil
	}
	return row, nil
}

func (r *jsonlReader) NextAppend(bufs [][]byte) (Row, error) {
	row, err := r.Next()
	if err != nil || row.Err != nil {
		return row, err
	}
	for k, t := range row.Inputs {
		start := len(bufs[k])
		bufs[k] = append(bufs[k], t.Data...)
		row.Inputs[k].Data = bufs[k][start:]
	}
	return row, nil
}

func (r *jsonlReader) parse(b []byte) (id string, in []tensor.Tensor, err error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if r.opt.IDColumn != "" {
		raw, ok := obj[r.opt.IDColumn]
		if !ok {
			return "", nil, fmt.Errorf("no %q (the id column)", r.opt.IDColumn)
		}
		id = idText(raw)
		delete(obj, r.opt.IDColumn)
	}
	in = make([]tensor.Tensor, len(r.opt.Inputs))
	seen := make([]bool, len(in))
	put := func(t tensor.Tensor) error {
		i, ok := r.byName[t.Name]
		if !ok {
			return fmt.Errorf("unknown input %q (the model's inputs are %s)", t.Name, specNames(r.opt.Inputs))
		}
		if seen[i] {
			return fmt.Errorf("input %q given twice", t.Name)
		}
		if err := r.opt.Inputs[i].Check(t); err != nil {
			return err
		}
		seen[i], in[i] = true, t
		return nil
	}
	_, inputNamedInputs := r.byName["inputs"]
	if raw, ok := obj["inputs"]; ok && !inputNamedInputs {
		var ts []JSONTensor
		if err := json.Unmarshal(raw, &ts); err != nil {
			return "", nil, fmt.Errorf("inputs: not a list of v2 tensors: %v", err)
		}
		if len(obj) > 1 {
			for k := range obj {
				if k != "inputs" {
					return "", nil, fmt.Errorf("unknown key %q beside inputs", k)
				}
			}
		}
		for _, j := range ts {
			t, err := j.Tensor()
			if err != nil {
				return "", nil, err
			}
			if r.opt.Batched {
				if len(t.Shape) == 0 || t.Shape[0] != 1 {
					return "", nil, fmt.Errorf("input %q: shape %v: a line is one row, so the batch dimension must be 1", t.Name, t.Shape)
				}
				t.Shape = t.Shape[1:]
			}
			if err := put(t); err != nil {
				return "", nil, err
			}
		}
	} else {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			i, ok := r.byName[k]
			if !ok {
				return "", nil, fmt.Errorf("unknown input %q (the model's inputs are %s)", k, specNames(r.opt.Inputs))
			}
			spec := r.opt.Inputs[i]
			data, shape, n, err := flatten(obj[k], spec.DataType)
			if err != nil {
				return "", nil, fmt.Errorf("input %q: %v", k, err)
			}
			if len(shape) != len(spec.Shape) {
				if shape, err = fitShape(spec, n); err != nil {
					return "", nil, err
				}
			}
			if err := put(tensor.Tensor{Name: k, DataType: spec.DataType, Shape: shape, Data: data}); err != nil {
				return "", nil, err
			}
		}
	}
	for i, ok := range seen {
		if !ok {
			return "", nil, fmt.Errorf("missing input %q", r.opt.Inputs[i].Name)
		}
	}
	return id, in, nil
}

// idText is an id value as text: a JSON string's contents, or any other
// value's compact JSON.
func idText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func specNames(specs []tensor.Spec) string {
	s := ""
	for i, sp := range specs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", sp.Name)
	}
	return s
}
