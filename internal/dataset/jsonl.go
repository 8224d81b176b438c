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
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi/jsonscan"
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
	long   []byte // a line longer than the read buffer, gathered
	// Scratch of parseFast, one element per input: NextAppend's
	// Row.Inputs, which inputs a line held, where each buffer stood, and
	// the last row shape of each (rows of one width share it).
	in     []tensor.Tensor
	seen   []bool
	mark   []int
	shapes [][]int64
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
	r := newJSONLReader(opt)
	r.f, r.r, r.total = f, bufio.NewReaderSize(f, 1<<20), total
	return r, nil
}

// newJSONLReader returns a reader of lines for opt, without a file.
func newJSONLReader(opt ReadOptions) *jsonlReader {
	n := len(opt.Inputs)
	r := &jsonlReader{opt: opt, byName: map[string]int{},
		in: make([]tensor.Tensor, n), seen: make([]bool, n), mark: make([]int, n), shapes: make([][]int64, n)}
	for i, s := range opt.Inputs {
		r.byName[s.Name] = i
	}
	return r
}

func (r *jsonlReader) Total() int64 { return r.total }
func (r *jsonlReader) Close() error { return r.f.Close() }

// readLine returns the next non-blank line, valid until the next call.
func (r *jsonlReader) readLine() ([]byte, error) {
	for {
		b, err := r.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the read buffer: gather it.
			r.long = append(r.long[:0], b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.r.ReadSlice('\n')
				r.long = append(r.long, b...)
			}
			b = r.long
		}
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

func (r *jsonlReader) Next() (Row, error) { return nextOwned(r, len(r.opt.Inputs)) }

func (r *jsonlReader) NextAppend(bufs [][]byte) (Row, error) {
	b, err := r.readLine()
	if err != nil {
		return Row{}, err
	}
	row := Row{Index: r.index, Line: r.line}
	r.index++
	if id, ok := r.parseFast(b, bufs); ok {
		row.ID, row.Inputs = id, r.in
		return row, nil
	}
	row.ID, row.Inputs, row.Err = r.parse(b)
	if row.Err != nil {
		row.Inputs = nil
		return row, nil
	}
	for k, t := range row.Inputs {
		start := len(bufs[k])
		bufs[k] = append(bufs[k], t.Data...)
		row.Inputs[k].Data = bufs[k][start:]
	}
	return row, nil
}

// parseFast reads the common line, {"INPUT": [numbers], ...} with a flat
// list of numbers for every input of a floating-point type and the id
// column a plain string or a number, straight onto bufs without the maps,
// interfaces and allocations of parse; it returns false, with bufs as they
// were, for anything else (another form, a nested list, another type, an
// escaped or non-ASCII id or key, a duplicate key, a malformed line), and
// parse then reads the line, errors included, exactly as it always has.
// FuzzJSONLFastPath holds the two to the same result.
//
// Hand-written on jsonscan, the HTTP front end's JSON reader, rather than
// encoding/json, which decodes a line into a map of raw values and each
// value into interfaces. BenchmarkJSONLLine, a classifier line (an id and
// 64 numbers), on the 2-vCPU "AMD EPYC" of bench/SCORE.md, one core, Go
// 1.26.8, medians of 5:
//
//	parse (encoding/json)   15.2 µs   8,160 B   167 allocs
//	parseFast                1.28 µs      8 B     1 alloc (the id)
//
//	go test -c -o /tmp/dataset.test ./internal/dataset && cd internal/dataset && \
//	    taskset -c 1 /tmp/dataset.test -test.run '^$' -test.bench JSONLLine -test.count 5 -test.benchtime 0.5s
//
// End to end, `onnxserve score` of such lines into JSON lines on one CPU
// went from 46,789 to 357,959 rows/s (bench/SCORE.md, side by side).
func (r *jsonlReader) parseFast(line []byte, bufs [][]byte) (id string, ok bool) {
	for k := range bufs {
		r.mark[k] = len(bufs[k])
	}
	clear(r.seen)
	defer func() {
		if !ok {
			for k := range bufs {
				bufs[k] = bufs[k][:r.mark[k]]
			}
		}
	}()
	s := jsonscan.New(line)
	if s.Open('{') != nil {
		return "", false
	}
	idSeen := false
	for i := 0; ; i++ {
		more, err := s.More('}', i)
		if err != nil {
			return "", false
		}
		if !more {
			break
		}
		key, err := s.Key()
		if err != nil || !plainASCII(key) {
			return "", false
		}
		if r.opt.IDColumn != "" && string(key) == r.opt.IDColumn {
			if idSeen {
				return "", false
			}
			idSeen = true
			if id, ok = fastID(&s); !ok {
				return "", false
			}
			continue
		}
		k, known := r.byName[string(key)]
		if !known || r.seen[k] {
			return "", false
		}
		r.seen[k] = true
		spec := r.opt.Inputs[k]
		switch spec.DataType {
		case tensor.FP32, tensor.FP64, tensor.FP16, tensor.BF16:
		default:
			return "", false
		}
		if s.Open('[') != nil {
			return "", false
		}
		var n int64
		for ; ; n++ {
			more, err := s.More(']', int(n))
			if err != nil {
				return "", false
			}
			if !more {
				break
			}
			var num jsonscan.Number
			s.Peek()
			b := s.Buf()
			if !jsonscan.ScanNumber(b, s.Pos(), &num) {
				return "", false
			}
			f, exact := num.Float64()
			if !exact {
				if f, err = strconv.ParseFloat(string(b[s.Pos():num.End]), 64); err != nil {
					return "", false
				}
			}
			s.Seek(num.End)
			if bufs[k], err = appendFloat(bufs[k], spec.DataType, f); err != nil {
				return "", false
			}
		}
		shape := r.shapes[k]
		if len(spec.Shape) == 1 {
			if len(shape) != 1 || shape[0] != n {
				shape = []int64{n}
			}
		} else if shape, err = fitShape(spec, n); err != nil {
			return "", false
		}
		r.shapes[k] = shape
		r.in[k] = tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape, Data: bufs[k][r.mark[k]:]}
		if spec.Check(r.in[k]) != nil {
			return "", false
		}
	}
	if s.End() != nil || (r.opt.IDColumn != "" && !idSeen) {
		return "", false
	}
	for _, seen := range r.seen {
		if !seen {
			return "", false
		}
	}
	return id, true
}

// fastID reads an id value as parse's idText would: a string without
// escapes or non-ASCII bytes as its text, a number as its token.
func fastID(s *jsonscan.Scanner) (string, bool) {
	switch c := s.Peek(); {
	case c == '"':
		start := s.Pos()
		str, err := s.Str()
		if err != nil || s.Pos()-start != len(str)+2 || !plainASCII(str) {
			return "", false
		}
		return string(str), true
	case c == '-' || c >= '0' && c <= '9':
		tok, _, err := s.Number()
		if err != nil {
			return "", false
		}
		return string(tok), true
	}
	return "", false
}

// plainASCII reports whether b is printable ASCII without a backslash, text
// encoding/json would decode to the same bytes.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
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
