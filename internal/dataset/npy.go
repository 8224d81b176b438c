package dataset

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// npyMagic opens every NPY file.
const npyMagic = "\x93NUMPY"

// npyTypes maps NPY little-endian type codes to tensor data types.
var npyTypes = map[string]tensor.DataType{
	"|b1": tensor.Bool, "|u1": tensor.Uint8, "<u2": tensor.Uint16, "<u4": tensor.Uint32, "<u8": tensor.Uint64,
	"|i1": tensor.Int8, "<i2": tensor.Int16, "<i4": tensor.Int32, "<i8": tensor.Int64,
	"<f2": tensor.FP16, "<f4": tensor.FP32, "<f8": tensor.FP64,
}

func npyDescr(dt tensor.DataType) (string, bool) {
	for k, v := range npyTypes {
		if v == dt {
			return k, true
		}
	}
	return "", false
}

var (
	npyDescrRe   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	npyFortranRe = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	npyShapeRe   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// npyReader reads an array [N, ...] one row (one index of the first
// dimension) at a time, for a model with one input.
type npyReader struct {
	f      *os.File
	r      *bufio.Reader
	spec   tensor.Spec
	shape  []int64
	rowLen int64
	rows   int64
	index  int64
	in     [1]tensor.Tensor // NextAppend's Row.Inputs
}

func openNPY(path string, opt ReadOptions) (_ Reader, err error) {
	spec, err := oneInput(opt, NPY)
	if err != nil {
		return nil, err
	}
	if opt.IDColumn != "" {
		return nil, fmt.Errorf("%w: an NPY file holds one array and no id column", ErrFormat)
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
	br := bufio.NewReaderSize(f, 1<<20)
	dt, shape, err := readNPYHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	if dt != spec.DataType {
		return nil, fmt.Errorf("%w: %s holds %s, the model's input %q is %s", ErrFormat, path, dt, spec.Name, spec.DataType)
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("%w: %s holds a scalar, want an array [rows, ...]", ErrFormat, path)
	}
	r := &npyReader{f: f, r: br, spec: spec, rows: shape[0]}
	per, err := tensor.ElementCount(shape[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	if len(shape[1:]) == len(spec.Shape) {
		r.shape = shape[1:]
		if err := spec.Check(tensor.Tensor{Name: spec.Name, DataType: dt, Shape: r.shape}); err != nil {
			return nil, fmt.Errorf("%w: %s: rows of shape %v: %v", ErrFormat, path, shape[1:], err)
		}
	} else if r.shape, err = fitShape(spec, per); err != nil {
		return nil, fmt.Errorf("%w: %s: rows of shape %v: %v", ErrFormat, path, shape[1:], err)
	}
	r.rowLen = per * int64(dt.Size())
	return r, nil
}

// readNPYHeader reads the magic, version and header dictionary.
func readNPYHeader(r io.Reader) (tensor.DataType, []int64, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil || string(pre[:6]) != npyMagic {
		return 0, nil, errors.New("not an NPY file")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, errors.New("truncated header")
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, errors.New("truncated header")
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return 0, nil, fmt.Errorf("NPY version %d.%d is not supported", pre[6], pre[7])
	}
	if hlen > 1<<20 {
		return 0, nil, fmt.Errorf("header of %d bytes", hlen)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, nil, errors.New("truncated header")
	}
	header := string(h)
	m := npyDescrRe.FindStringSubmatch(header)
	if m == nil {
		return 0, nil, errors.New("header has no descr")
	}
	descr := m[1]
	if len(descr) == 3 && descr[0] == '=' {
		descr = "<" + descr[1:]
	}
	dt, ok := npyTypes[descr]
	if !ok {
		dt, ok = npyTypes["|"+descr[1:]]
	}
	if !ok {
		return 0, nil, fmt.Errorf("element type %q is not supported (want little-endian numbers or booleans)", m[1])
	}
	if m := npyFortranRe.FindStringSubmatch(header); m == nil || m[1] == "True" {
		return 0, nil, errors.New("only C-order (fortran_order: False) arrays are supported")
	}
	m = npyShapeRe.FindStringSubmatch(header)
	if m == nil {
		return 0, nil, errors.New("header has no shape")
	}
	var shape []int64
	for _, s := range strings.Split(m[1], ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		d, err := strconv.ParseInt(strings.TrimSuffix(s, "L"), 10, 64)
		if err != nil || d < 0 {
			return 0, nil, fmt.Errorf("bad shape (%s)", m[1])
		}
		shape = append(shape, d)
	}
	return dt, shape, nil
}

func (r *npyReader) Total() int64 { return r.rows }
func (r *npyReader) Close() error { return r.f.Close() }

func (r *npyReader) Skip(n int64) error {
	if r.index+n > r.rows {
		return io.ErrUnexpectedEOF
	}
	if _, err := r.r.Discard(int(n * r.rowLen)); err != nil {
		return fmt.Errorf("NPY data: %w", err)
	}
	r.index += n
	return nil
}

func (r *npyReader) Next() (Row, error) { return nextOwned(r, 1) }

func (r *npyReader) NextAppend(bufs [][]byte) (Row, error) {
	if r.index >= r.rows {
		return Row{}, io.EOF
	}
	start := len(bufs[0])
	b := slices.Grow(bufs[0], int(r.rowLen))[:start+int(r.rowLen)]
	if err := r.readRow(b[start:]); err != nil {
		return Row{}, fmt.Errorf("%w: NPY data ends at row %d of %d", ErrFormat, r.index, r.rows)
	}
	bufs[0] = b
	r.in[0] = tensor.Tensor{Name: r.spec.Name, DataType: r.spec.DataType, Shape: r.shape, Data: b[start:]}
	row := Row{Index: r.index, Inputs: r.in[:]}
	r.index++
	return row, nil
}

// npyDirectRow is the row size from which rows are read from the file
// straight into the caller's buffer rather than through the read buffer:
// an image a row (PaddleOCR's is 110 KB) would otherwise be copied twice.
const npyDirectRow = 64 << 10

// readRow fills dst with the next row's bytes. A large row takes what the
// read buffer still holds and the rest from the file; the buffer is then
// empty, so the two never disagree about the file's position.
func (r *npyReader) readRow(dst []byte) error {
	if len(dst) < npyDirectRow {
		_, err := io.ReadFull(r.r, dst)
		return err
	}
	n := 0
	if k := r.r.Buffered(); k > 0 {
		n, _ = r.r.Read(dst[:min(k, len(dst))])
	}
	_, err := io.ReadFull(r.f, dst[n:])
	return err
}

// npyHeader returns a version 1.0 NPY header for a C-order array, padded
// so the data starts at a multiple of 64 bytes.
func npyHeader(dt tensor.DataType, shape []int64) ([]byte, error) {
	descr, ok := npyDescr(dt)
	if !ok {
		return nil, fmt.Errorf("%w: NPY cannot hold %s", ErrFormat, dt)
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, s)
	total := len(npyMagic) + 4 + len(dict) + 1
	pad := (64 - total%64) % 64
	dict += strings.Repeat(" ", pad) + "\n"
	out := append([]byte(npyMagic), 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(dict)))
	return append(out, dict...), nil
}
