package tensor

import "fmt"

// Rows returns the size of t's first (batch) dimension, or an error for a
// scalar.
func Rows(t Tensor) (int64, error) {
	if len(t.Shape) == 0 {
		return 0, Invalidf("tensor %q: a scalar has no batch dimension", t.Name)
	}
	return t.Shape[0], nil
}

// SameLayout reports whether a and b can be stacked along the batch
// dimension: same name, data type, rank and non-batch dimensions.
func SameLayout(a, b Tensor) bool {
	if a.Name != b.Name || a.DataType != b.DataType || len(a.Shape) != len(b.Shape) || len(a.Shape) == 0 {
		return false
	}
	for i := 1; i < len(a.Shape); i++ {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// ConcatSize returns the number of data bytes Concat(parts) produces, so a
// caller can size a pooled buffer.
func ConcatSize(parts []Tensor) int {
	n := 0
	for _, p := range parts {
		n += len(p.Data)
	}
	return n
}

// Concat stacks parts along the batch dimension. The data is copied once into
// buf, which is grown if it is too small; pass buf[:0] of a pooled slice to
// avoid allocating. Parts must share a layout (SameLayout) and be valid.
func Concat(parts []Tensor, buf []byte) (Tensor, error) {
	if len(parts) == 0 {
		return Tensor{}, fmt.Errorf("tensor: concat of nothing")
	}
	first := parts[0]
	rows := int64(0)
	for i, p := range parts {
		if !SameLayout(first, p) {
			return Tensor{}, Invalidf("tensor %q: part %d shape %v %s cannot be stacked with shape %v %s",
				first.Name, i, p.Shape, p.DataType, first.Shape, first.DataType)
		}
		rows += p.Shape[0]
	}
	if len(parts) == 1 {
		return first, nil
	}
	size := ConcatSize(parts)
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:0]
	for _, p := range parts {
		buf = append(buf, p.Data...)
	}
	shape := make([]int64, len(first.Shape))
	copy(shape, first.Shape)
	shape[0] = rows
	return Tensor{Name: first.Name, DataType: first.DataType, Shape: shape, Data: buf}, nil
}

// Split cuts t along the batch dimension into len(rows) tensors of rows[i]
// rows each. The results are views into t.Data (no copy); rows must sum to
// t's batch size.
func Split(t Tensor, rows []int64) ([]Tensor, error) {
	out := make([]Tensor, len(rows))
	if err := SplitInto(out, t, rows); err != nil {
		return nil, err
	}
	return out, nil
}

// SplitInto is Split writing into dst, which must have len(rows) elements;
// the shapes of the results share one allocation.
func SplitInto(dst []Tensor, t Tensor, rows []int64) error {
	total, err := Rows(t)
	if err != nil {
		return err
	}
	if len(dst) != len(rows) {
		return fmt.Errorf("tensor: split into %d parts with %d row counts", len(dst), len(rows))
	}
	var sum int64
	for _, r := range rows {
		if r < 0 {
			return fmt.Errorf("tensor %q: negative row count %d", t.Name, r)
		}
		sum += r
	}
	if sum != total {
		return fmt.Errorf("tensor %q: split rows sum to %d, tensor has %d", t.Name, sum, total)
	}
	rowElems, err := ElementCount(t.Shape[1:])
	if err != nil {
		return err
	}
	rank := len(t.Shape)
	shapes := make([]int64, rank*len(rows))
	off := 0
	for i, r := range rows {
		shape := shapes[i*rank : (i+1)*rank : (i+1)*rank]
		copy(shape, t.Shape)
		shape[0] = r
		var n int
		if t.DataType == Bytes {
			n, err = bytesOffset(t.Data[off:], r*rowElems)
			if err != nil {
				return Invalidf("tensor %q: %v", t.Name, err)
			}
		} else {
			n = int(r * rowElems * int64(t.DataType.Size()))
			if off+n > len(t.Data) {
				return Invalidf("tensor %q: data too short to split", t.Name)
			}
		}
		dst[i] = Tensor{Name: t.Name, DataType: t.DataType, Shape: shape, Data: t.Data[off : off+n : off+n]}
		off += n
	}
	return nil
}
