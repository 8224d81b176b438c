package dataset

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// WriteOptions say what each written row holds.
type WriteOptions struct {
	// Outputs are the columns, in order: the model's outputs as one row
	// sees them (without the batch dimension when the model batches).
	Outputs []tensor.Spec
	// IDColumn, when not "", is the name of a first column holding each
	// row's id.
	IDColumn string
	// Rows is the number of rows that will be written; NPY needs it for
	// its header, the other formats ignore it.
	Rows int64
}

// Writer writes one row per Write to a data file. Not safe for concurrent
// use.
type Writer interface {
	// Write writes one row: its id (ignored without an id column) and one
	// row of each output, in the order of WriteOptions.Outputs, each
	// shaped as its spec with -1 filled in.
	Write(id string, out []tensor.Tensor) error
	// Close writes what is buffered and the format's trailer. It does not
	// close the io.Writer.
	Close() error
}

// NewWriter returns a Writer of format f on w. NPY holds one numeric
// output and no id column; every format holds any number of rows.
func NewWriter(w io.Writer, f Format, opt WriteOptions) (Writer, error) {
	switch f {
	case JSONL:
		return &jsonlWriter{w: bufio.NewWriterSize(w, 1<<20), opt: opt}, nil
	case CSV:
		return &csvWriter{w: bufio.NewWriterSize(w, 1<<20), opt: opt}, nil
	case NPY:
		if len(opt.Outputs) != 1 {
			return nil, fmt.Errorf("%w: an NPY file holds one array; the model has %d outputs: select one, or write JSON lines, CSV or Parquet", ErrFormat, len(opt.Outputs))
		}
		if opt.IDColumn != "" {
			return nil, fmt.Errorf("%w: an NPY file holds one array and no id column: write JSON lines, CSV or Parquet", ErrFormat)
		}
		if _, ok := npyDescr(opt.Outputs[0].DataType); !ok {
			return nil, fmt.Errorf("%w: NPY cannot hold %s", ErrFormat, opt.Outputs[0].DataType)
		}
		return &npyWriter{w: bufio.NewWriterSize(w, 1<<20), opt: opt}, nil
	case Parquet:
		return newParquetWriter(w, opt)
	}
	return nil, fmt.Errorf("%w: unknown format %q", ErrFormat, f)
}

// checkRow checks one row of outputs against the options.
func checkRow(opt WriteOptions, out []tensor.Tensor) error {
	if len(out) != len(opt.Outputs) {
		return fmt.Errorf("%d outputs for %d columns", len(out), len(opt.Outputs))
	}
	for i, t := range out {
		if err := opt.Outputs[i].Check(t); err != nil {
			return err
		}
	}
	return nil
}

// jsonlWriter writes {"id": "...", "OUTPUT": [...]} per line; a row of
// rank 0 is a bare value, higher ranks nested lists.
type jsonlWriter struct {
	w   *bufio.Writer
	opt WriteOptions
	buf []byte
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

func (w *jsonlWriter) Write(id string, out []tensor.Tensor) error {
	if err := checkRow(w.opt, out); err != nil {
		return err
	}
	b := append(w.buf[:0], '{')
	if w.opt.IDColumn != "" {
		b = appendJSONString(b, w.opt.IDColumn)
		b = append(b, ':')
		b = appendJSONString(b, id)
	}
	for i, t := range out {
		if i > 0 || w.opt.IDColumn != "" {
			b = append(b, ',')
		}
		b = appendJSONString(b, t.Name)
		b = append(b, ':')
		var err error
		if b, err = appendNested(b, t); err != nil {
			return err
		}
	}
	b = append(b, '}', '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

func (w *jsonlWriter) Close() error { return w.w.Flush() }

// appendNested appends t's elements as JSON nested by its shape.
func appendNested(dst []byte, t tensor.Tensor) ([]byte, error) {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return dst, err
	}
	var strs [][]byte
	if t.DataType == tensor.Bytes {
		if strs, err = tensor.BytesElements(t.Data, n); err != nil {
			return dst, err
		}
	}
	k := 0
	var rec func(depth int) []byte
	rec = func(depth int) []byte {
		if depth == len(t.Shape) {
			if strs != nil {
				dst = appendJSONString(dst, string(strs[k]))
			} else {
				size := t.DataType.Size()
				dst = appendElement(dst, t.DataType, t.Data[k*size:], true)
			}
			k++
			return dst
		}
		dst = append(dst, '[')
		for i := range t.Shape[depth] {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = rec(depth + 1)
		}
		return append(dst, ']')
	}
	return rec(0), nil
}

// csvWriter writes a header line, then one line per row: the id, then
// every element of each output, flattened.
type csvWriter struct {
	w      *bufio.Writer
	opt    WriteOptions
	header bool
	counts []int64
	buf    []byte
}

func appendCSVField(dst []byte, s string) []byte {
	if s == "" || !strings.ContainsAny(s, ",\"\r\n") && s[0] != ' ' && s[len(s)-1] != ' ' {
		return append(dst, s...)
	}
	return append(append(append(dst, '"'), strings.ReplaceAll(s, `"`, `""`)...), '"')
}

func (w *csvWriter) writeHeader(out []tensor.Tensor) error {
	w.header = true
	var b []byte
	var cols []string
	if w.opt.IDColumn != "" {
		cols = append(cols, w.opt.IDColumn)
	}
	w.counts = make([]int64, len(w.opt.Outputs))
	for i, spec := range w.opt.Outputs {
		shape := spec.Shape
		if out != nil {
			shape = out[i].Shape
		}
		n, err := tensor.ElementCount(shape)
		if err != nil {
			n = 0 // no row and a -1 dimension: the name alone
		}
		w.counts[i] = n
		if len(shape) == 0 || err != nil {
			cols = append(cols, spec.Name)
			continue
		}
		for k := range n {
			cols = append(cols, spec.Name+"_"+strconv.FormatInt(k, 10))
		}
	}
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, c)
	}
	b = append(b, '\n')
	_, err := w.w.Write(b)
	return err
}

func (w *csvWriter) Write(id string, out []tensor.Tensor) error {
	if err := checkRow(w.opt, out); err != nil {
		return err
	}
	if !w.header {
		if err := w.writeHeader(out); err != nil {
			return err
		}
	}
	b := w.buf[:0]
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	if w.opt.IDColumn != "" {
		sep()
		b = appendCSVField(b, id)
	}
	for i, t := range out {
		n, err := tensor.ElementCount(t.Shape)
		if err != nil {
			return err
		}
		if n != w.counts[i] {
			return fmt.Errorf("output %q: %d values in a row, the header has %d columns for it", t.Name, n, w.counts[i])
		}
		if t.DataType == tensor.Bytes {
			strs, err := tensor.BytesElements(t.Data, n)
			if err != nil {
				return err
			}
			for _, s := range strs {
				sep()
				b = appendCSVField(b, string(s))
			}
			continue
		}
		size := t.DataType.Size()
		for k := range int(n) {
			sep()
			b = appendElement(b, t.DataType, t.Data[k*size:], false)
		}
	}
	b = append(b, '\n')
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

func (w *csvWriter) Close() error {
	if !w.header {
		if err := w.writeHeader(nil); err != nil {
			return err
		}
	}
	return w.w.Flush()
}

// npyWriter writes an array [Rows, ...]; every row must have the shape of
// the first.
type npyWriter struct {
	w       *bufio.Writer
	opt     WriteOptions
	shape   []int64
	written int64
}

func (w *npyWriter) start(shape []int64) error {
	w.shape = slices.Clone(shape)
	h, err := npyHeader(w.opt.Outputs[0].DataType, append([]int64{w.opt.Rows}, shape...))
	if err != nil {
		return err
	}
	_, err = w.w.Write(h)
	return err
}

func (w *npyWriter) Write(_ string, out []tensor.Tensor) error {
	if err := checkRow(w.opt, out); err != nil {
		return err
	}
	t := out[0]
	if w.shape == nil {
		if err := w.start(t.Shape); err != nil {
			return err
		}
	} else if !slices.Equal(w.shape, t.Shape) {
		return fmt.Errorf("output %q: row shape %v differs from the first row's %v; NPY holds one array", t.Name, t.Shape, w.shape)
	}
	if w.written == w.opt.Rows {
		return fmt.Errorf("more rows than the %d announced", w.opt.Rows)
	}
	w.written++
	_, err := w.w.Write(t.Data)
	return err
}

func (w *npyWriter) Close() error {
	if w.shape == nil {
		shape := slices.Clone(w.opt.Outputs[0].Shape)
		for i, d := range shape {
			shape[i] = max(d, 0)
		}
		if err := w.start(shape); err != nil {
			return err
		}
	}
	if w.written != w.opt.Rows {
		return fmt.Errorf("%d rows written, %d announced", w.written, w.opt.Rows)
	}
	return w.w.Flush()
}

// parquetRowsPerWrite is how many rows the Parquet writer hands the
// library at once.
const parquetRowsPerWrite = 1024

// parquetWriter writes one column per output (a list of its elements,
// or a plain value for a rank-0 row) and the id column, in name order.
type parquetWriter struct {
	w      *parquet.Writer
	opt    WriteOptions
	b      *parquet.RowBuilder
	idLeaf int
	leafs  []int
	rows   []parquet.Row
}

func newParquetWriter(w io.Writer, opt WriteOptions) (Writer, error) {
	g := parquet.Group{}
	for _, spec := range opt.Outputs {
		leaf, err := parquetLeaf(spec.DataType)
		if err != nil {
			return nil, err
		}
		if _, dup := g[spec.Name]; dup || spec.Name == opt.IDColumn {
			return nil, fmt.Errorf("%w: two columns named %q", ErrFormat, spec.Name)
		}
		if len(spec.Shape) == 0 {
			g[spec.Name] = leaf
		} else {
			g[spec.Name] = parquet.List(leaf)
		}
	}
	if opt.IDColumn != "" {
		g[opt.IDColumn] = parquet.String()
	}
	schema := parquet.NewSchema("onnxserve", g)
	pw := &parquetWriter{
		w:      parquet.NewWriter(w, schema, parquet.Compression(&parquet.Snappy), parquet.CreatedBy("onnxserve", "", "")),
		opt:    opt,
		b:      parquet.NewRowBuilder(schema),
		idLeaf: -1,
	}
	lookup := func(path ...string) int {
		leaf, _ := schema.Lookup(path...)
		return leaf.ColumnIndex
	}
	if opt.IDColumn != "" {
		pw.idLeaf = lookup(opt.IDColumn)
	}
	for _, spec := range opt.Outputs {
		if len(spec.Shape) == 0 {
			pw.leafs = append(pw.leafs, lookup(spec.Name))
		} else {
			pw.leafs = append(pw.leafs, lookup(spec.Name, "list", "element"))
		}
	}
	return pw, nil
}

func (w *parquetWriter) Write(id string, out []tensor.Tensor) error {
	if err := checkRow(w.opt, out); err != nil {
		return err
	}
	w.b.Reset()
	if w.idLeaf >= 0 {
		w.b.Add(w.idLeaf, parquet.ByteArrayValue([]byte(id)))
	}
	for i, t := range out {
		leaf := w.leafs[i]
		n, err := tensor.ElementCount(t.Shape)
		if err != nil {
			return err
		}
		if t.DataType == tensor.Bytes {
			strs, err := tensor.BytesElements(t.Data, n)
			if err != nil {
				return err
			}
			for _, s := range strs {
				w.b.Add(leaf, parquet.ByteArrayValue(s))
			}
			continue
		}
		size := t.DataType.Size()
		for k := range int(n) {
			w.b.Add(leaf, parquetElement(t.DataType, t.Data[k*size:]))
		}
	}
	w.rows = append(w.rows, w.b.Row())
	if len(w.rows) >= parquetRowsPerWrite {
		return w.flush()
	}
	return nil
}

func (w *parquetWriter) flush() error {
	if _, err := w.w.WriteRows(w.rows); err != nil {
		return err
	}
	clear(w.rows)
	w.rows = w.rows[:0]
	return nil
}

func (w *parquetWriter) Close() error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.w.Close()
}
