package dataset

import (
	"bufio"
	"bytes"
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
	// shaped as its spec with -1 filled in. It keeps no reference to out
	// or its data once it returns, so the caller may reuse them.
	Write(id string, out []tensor.Tensor) error
	// Close writes what is buffered and the format's trailer. It does not
	// close the io.Writer.
	Close() error
}

// RowEncoder is implemented by the Writers of the formats whose rows
// encode independently of each other (JSON lines, CSV), so that many
// goroutines can encode rows that one goroutine then writes in order:
// score encodes each batch on the worker that ran it.
type RowEncoder interface {
	// AppendRow appends to dst the bytes Write would write for the row
	// (id, out), or returns the error Write would return for it. It is
	// safe for concurrent use, also with WriteEncoded.
	AppendRow(dst []byte, id string, out []tensor.Tensor) ([]byte, error)
	// WriteEncoded writes a row AppendRow encoded, as Write would have
	// written it; out is that row, which the checks across rows see (a
	// CSV header is made from the first row's shapes).
	WriteEncoded(enc []byte, out []tensor.Tensor) error
}

// NewWriter returns a Writer of format f on w. NPY holds one numeric
// output and no id column; every format holds any number of rows.
func NewWriter(w io.Writer, f Format, opt WriteOptions) (Writer, error) {
	switch f {
	case JSONL:
		return newJSONLWriter(w, opt), nil
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
	// keys are the quoted keys of the outputs, as `"NAME":`, and idKey
	// that of the id column, encoded once rather than on every row.
	keys  [][]byte
	idKey []byte
}

func newJSONLWriter(w io.Writer, opt WriteOptions) *jsonlWriter {
	jw := &jsonlWriter{w: bufio.NewWriterSize(w, 1<<20), opt: opt}
	if opt.IDColumn != "" {
		jw.idKey = append(appendJSONString(nil, opt.IDColumn), ':')
	}
	for _, spec := range opt.Outputs {
		jw.keys = append(jw.keys, append(appendJSONString(nil, spec.Name), ':'))
	}
	return jw
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it: text that needs no escaping is copied as is, and anything
// else (quotes, backslashes, control characters, HTML characters,
// non-ASCII) goes through json.Marshal, which allocates on every call and
// took a visible share of writing a line when every id and key went
// through it. FuzzAppendJSONString holds the two to the same bytes.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func (w *jsonlWriter) AppendRow(b []byte, id string, out []tensor.Tensor) ([]byte, error) {
	if err := checkRow(w.opt, out); err != nil {
		return b, err
	}
	b = append(b, '{')
	if w.opt.IDColumn != "" {
		b = append(b, w.idKey...)
		b = appendJSONString(b, id)
	}
	for i, t := range out {
		if i > 0 || w.opt.IDColumn != "" {
			b = append(b, ',')
		}
		if t.Name == w.opt.Outputs[i].Name {
			b = append(b, w.keys[i]...)
		} else {
			b = append(appendJSONString(b, t.Name), ':')
		}
		var err error
		if b, err = appendNested(b, t); err != nil {
			return b, err
		}
	}
	return append(b, '}', '\n'), nil
}

func (w *jsonlWriter) Write(id string, out []tensor.Tensor) error {
	b, err := w.AppendRow(w.buf[:0], id, out)
	w.buf = b
	if err != nil {
		return err
	}
	_, err = w.w.Write(b)
	return err
}

func (w *jsonlWriter) WriteEncoded(enc []byte, _ []tensor.Tensor) error {
	_, err := w.w.Write(enc)
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
	return appendDims(dst, t, strs, 0, &k), nil
}

// appendDims appends the elements of t from *k on, nested from dimension
// depth down; the innermost dimension is one loop.
func appendDims(dst []byte, t tensor.Tensor, strs [][]byte, depth int, k *int) []byte {
	if depth == len(t.Shape) {
		dst = appendJSONElement(dst, t, strs, *k)
		*k++
		return dst
	}
	dst = append(dst, '[')
	inner := depth == len(t.Shape)-1
	for i := range t.Shape[depth] {
		if i > 0 {
			dst = append(dst, ',')
		}
		if inner {
			dst = appendJSONElement(dst, t, strs, *k)
			*k++
		} else {
			dst = appendDims(dst, t, strs, depth+1, k)
		}
	}
	return append(dst, ']')
}

// appendJSONElement appends element k of t: a string for BYTES (strs holds
// the elements), a number or a boolean otherwise.
func appendJSONElement(dst []byte, t tensor.Tensor, strs [][]byte, k int) []byte {
	if strs != nil {
		return appendJSONString(dst, string(strs[k]))
	}
	return appendElement(dst, t.DataType, t.Data[k*t.DataType.Size():], true)
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
	if err := w.fit(out); err != nil {
		return err
	}
	b, err := w.appendFields(w.buf[:0], id, out)
	w.buf = b
	if err != nil {
		return err
	}
	_, err = w.w.Write(b)
	return err
}

// fit writes the header at the first row and checks that each output of
// out has as many values as the header has columns for it.
func (w *csvWriter) fit(out []tensor.Tensor) error {
	if !w.header {
		if err := w.writeHeader(out); err != nil {
			return err
		}
	}
	for i, t := range out {
		n, err := tensor.ElementCount(t.Shape)
		if err != nil {
			return err
		}
		if n != w.counts[i] {
			return fmt.Errorf("output %q: %d values in a row, the header has %d columns for it", t.Name, n, w.counts[i])
		}
	}
	return nil
}

func (w *csvWriter) AppendRow(dst []byte, id string, out []tensor.Tensor) ([]byte, error) {
	if err := checkRow(w.opt, out); err != nil {
		return dst, err
	}
	return w.appendFields(dst, id, out)
}

func (w *csvWriter) WriteEncoded(enc []byte, out []tensor.Tensor) error {
	if err := w.fit(out); err != nil {
		return err
	}
	_, err := w.w.Write(enc)
	return err
}

// appendFields appends the row's line: the id, then every element of each
// output, flattened.
func (w *csvWriter) appendFields(b []byte, id string, out []tensor.Tensor) ([]byte, error) {
	first := true
	if w.opt.IDColumn != "" {
		b = appendCSVField(b, id)
		first = false
	}
	for _, t := range out {
		n, err := tensor.ElementCount(t.Shape)
		if err != nil {
			return b, err
		}
		if t.DataType == tensor.Bytes {
			strs, err := tensor.BytesElements(t.Data, n)
			if err != nil {
				return b, err
			}
			for _, s := range strs {
				if !first {
					b = append(b, ',')
				}
				first = false
				b = appendCSVField(b, string(s))
			}
			continue
		}
		size := t.DataType.Size()
		for k := range int(n) {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendElement(b, t.DataType, t.Data[k*size:], false)
		}
	}
	return append(b, '\n'), nil
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

// A Parquet row group is held in memory until it is complete, so the
// writer ends one every parquetGroupRows rows or once its rows hold
// parquetGroupBytes of element data, whichever comes first: memory stays
// bounded whatever the file's size. (The library's default is one row
// group for the whole file: 60 MiB more peak RSS at a million rows of the
// classifier's ten floats.) At 122,880 rows a group (DuckDB's default) the
// peak still rose by 9 to 14 MiB from 100,000 rows to 1,000,000; at 32,768
// it rose by 2 (bench/SCORE.md measures it).
const (
	parquetGroupRows  = 32768
	parquetGroupBytes = 16 << 20
)

// parquetWriter writes one column per output (a list of its elements,
// or a plain value for a rank-0 row) and the id column, in name order.
type parquetWriter struct {
	w      *parquet.Writer
	opt    WriteOptions
	b      *parquet.RowBuilder
	idLeaf int
	leafs  []int
	rows   []parquet.Row
	// groupRows and groupBytes are the rows and element bytes of the
	// row group being written.
	groupRows, groupBytes int
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
				// A copy: the value is kept until the rows are flushed,
				// and the caller may reuse out.
				w.b.Add(leaf, parquet.ByteArrayValue(bytes.Clone(s)))
			}
			w.groupBytes += len(t.Data)
			continue
		}
		size := t.DataType.Size()
		for k := range int(n) {
			w.b.Add(leaf, parquetElement(t.DataType, t.Data[k*size:]))
		}
		w.groupBytes += len(t.Data)
	}
	w.rows = append(w.rows, w.b.Row())
	w.groupRows++
	if w.groupRows >= parquetGroupRows || w.groupBytes >= parquetGroupBytes {
		if err := w.flush(); err != nil {
			return err
		}
		w.groupRows, w.groupBytes = 0, 0
		return w.w.Flush()
	}
	if len(w.rows) >= parquetRowsPerWrite {
		return w.flush()
	}
	return nil
}

// flush hands the pending rows to the library.
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
