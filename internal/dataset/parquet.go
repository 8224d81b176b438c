package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// parquetReader reads the selected columns of a Parquet file as one row of
// the model's one input: several scalar columns side by side, or one list
// column whose elements are the row.
type parquetReader struct {
	f      *os.File
	r      *parquet.Reader
	spec   tensor.Spec
	shape  []int64 // fixed row shape for scalar columns; nil for a list column
	leafs  []int   // leaf column index of each selected column
	list   bool
	idLeaf int // -1 without an id column
	buf    []parquet.Row
	pos, n int
	index  int64
	total  int64
	vals   [][]parquet.Value // scratch: the values of each leaf of one row
	in     [1]tensor.Tensor  // NextAppend's Row.Inputs
}

func openParquet(path string, opt ReadOptions) (_ Reader, err error) {
	spec, err := oneInput(opt, Parquet)
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
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	schema := pf.Schema()
	cols := schema.Columns()
	leafOf := map[string]int{}
	var names []string
	for i, p := range cols {
		if _, dup := leafOf[p[0]]; dup {
			leafOf[p[0]] = -1 // a group of several leaves: not a column we read
			continue
		}
		leafOf[p[0]] = i
		names = append(names, p[0])
	}
	r := &parquetReader{f: f, spec: spec, idLeaf: -1, total: pf.NumRows(), vals: make([][]parquet.Value, len(cols))}
	find := func(name string) (int, error) {
		i, ok := leafOf[name]
		if !ok {
			return 0, fmt.Errorf("%w: %s: no column %q (it has %v)", ErrFormat, path, name, names)
		}
		if i < 0 {
			return 0, fmt.Errorf("%w: %s: column %q is a group, want numbers or a list of numbers", ErrFormat, path, name)
		}
		return i, nil
	}
	if opt.IDColumn != "" {
		if r.idLeaf, err = find(opt.IDColumn); err != nil {
			return nil, err
		}
	}
	sel := opt.Columns
	if len(sel) == 0 {
		for _, n := range names {
			if n != opt.IDColumn {
				sel = append(sel, n)
			}
		}
	}
	for _, name := range sel {
		i, err := find(name)
		if err != nil {
			return nil, err
		}
		leaf, _ := schema.Lookup(cols[i]...)
		if leaf.MaxRepetitionLevel > 0 {
			if len(sel) > 1 {
				return nil, fmt.Errorf("%w: %s: column %q is a list; select it alone or scalar columns only", ErrFormat, path, name)
			}
			r.list = true
		}
		r.leafs = append(r.leafs, i)
	}
	if !r.list {
		if r.shape, err = fitShape(spec, int64(len(r.leafs))); err != nil {
			return nil, fmt.Errorf("%w: %s: %d columns: %v", ErrFormat, path, len(r.leafs), err)
		}
	}
	r.r = parquet.NewReader(pf)
	r.buf = make([]parquet.Row, 256)
	return r, nil
}

func (r *parquetReader) Total() int64 { return r.total }
func (r *parquetReader) Close() error { return errors.Join(r.r.Close(), r.f.Close()) }

func (r *parquetReader) Skip(n int64) error { return skipNext(r, n) }

func (r *parquetReader) Next() (Row, error) { return nextOwned(r, 1) }

func (r *parquetReader) NextAppend(bufs [][]byte) (Row, error) {
	if r.pos == r.n {
		n, err := r.r.ReadRows(r.buf)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return Row{}, io.EOF
			}
			return Row{}, fmt.Errorf("%w: parquet: %v", ErrFormat, err)
		}
		r.pos, r.n = 0, n
	}
	prow := r.buf[r.pos]
	r.pos++
	row := Row{Index: r.index}
	r.index++
	for i := range r.vals {
		r.vals[i] = r.vals[i][:0]
	}
	for _, v := range prow {
		c := v.Column()
		r.vals[c] = append(r.vals[c], v)
	}
	if r.idLeaf >= 0 {
		vs := r.vals[r.idLeaf]
		if len(vs) != 1 || vs[0].IsNull() {
			row.Err = errors.New("the id column is null")
			return row, nil
		}
		row.ID = valueText(vs[0])
	}
	dt := r.spec.DataType
	// data grows bufs[0] in place; bufs[0] takes its new length only
	// once the row is good.
	start := len(bufs[0])
	data := bufs[0]
	var err error
	for k, leaf := range r.leafs {
		for _, v := range r.vals[leaf] {
			if v.IsNull() {
				if r.list {
					continue // an empty or null list
				}
				row.Err = fmt.Errorf("column %d is null", k)
				return row, nil
			}
			if data, err = appendValue(data, dt, v); err != nil {
				row.Err = err
				return row, nil
			}
		}
	}
	shape := r.shape
	if r.list {
		n := int64((len(data) - start) / max(dt.Size(), 1))
		if dt == tensor.Bytes {
			n = 0
			for _, v := range r.vals[r.leafs[0]] {
				if !v.IsNull() {
					n++
				}
			}
		}
		if shape, err = fitShape(r.spec, n); err != nil {
			row.Err = err
			return row, nil
		}
	}
	bufs[0] = data
	r.in[0] = tensor.Tensor{Name: r.spec.Name, DataType: dt, Shape: shape, Data: data[start:]}
	row.Inputs = r.in[:]
	return row, nil
}

// appendValue appends one Parquet value as an element of type dt.
func appendValue(dst []byte, dt tensor.DataType, v parquet.Value) ([]byte, error) {
	switch v.Kind() {
	case parquet.Float:
		return appendFloat(dst, dt, float64(v.Float()))
	case parquet.Double:
		return appendFloat(dst, dt, v.Double())
	case parquet.Int32:
		return appendText(dst, dt, strconv.FormatInt(int64(v.Int32()), 10))
	case parquet.Int64:
		return appendText(dst, dt, strconv.FormatInt(v.Int64(), 10))
	case parquet.Boolean:
		if dt == tensor.Bool {
			return append(dst, map[bool]byte{false: 0, true: 1}[v.Boolean()]), nil
		}
		return appendText(dst, dt, map[bool]string{false: "0", true: "1"}[v.Boolean()])
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return appendText(dst, dt, string(v.ByteArray()))
	}
	return dst, fmt.Errorf("%w: parquet %s values are not supported", errValue, v.Kind())
}

// valueText is a Parquet value as id text.
func valueText(v parquet.Value) string {
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return string(v.ByteArray())
	case parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	}
	return v.String()
}

// parquetLeaf is the Parquet node that holds elements of dt.
func parquetLeaf(dt tensor.DataType) (parquet.Node, error) {
	switch dt {
	case tensor.Bool:
		return parquet.Leaf(parquet.BooleanType), nil
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		return parquet.Int(dt.Size() * 8), nil
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		return parquet.Uint(dt.Size() * 8), nil
	case tensor.FP16, tensor.BF16, tensor.FP32:
		return parquet.Leaf(parquet.FloatType), nil
	case tensor.FP64:
		return parquet.Leaf(parquet.DoubleType), nil
	case tensor.Bytes:
		return parquet.String(), nil
	}
	return nil, fmt.Errorf("%w: Parquet cannot hold %s", ErrFormat, dt)
}

// parquetElement is element b (of type dt) as a Parquet value of the
// column parquetLeaf(dt) makes.
func parquetElement(dt tensor.DataType, b []byte) parquet.Value {
	switch dt {
	case tensor.Bool:
		return parquet.BooleanValue(b[0] != 0)
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return parquet.Int32Value(int32(elementFloatInt(dt, b)))
	case tensor.Int64:
		return parquet.Int64Value(elementFloatInt(dt, b))
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return parquet.Int32Value(int32(uint32(elementUint(dt, b))))
	case tensor.Uint64:
		return parquet.Int64Value(int64(elementUint(dt, b)))
	case tensor.FP64:
		return parquet.DoubleValue(elementFloat(dt, b))
	}
	return parquet.FloatValue(float32(elementFloat(dt, b)))
}
