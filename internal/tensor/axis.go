package tensor

import "fmt"

// Axis helpers batch tensors along an axis other than the first, as the
// recurrent state of a model often needs ([layers, batch, hidden]), and
// carry unbatched (shared) inputs. NoAxis marks a tensor that has no batch
// axis: every request of a batch must hold the same value, passed once.
const NoAxis = -1

// RowsAt returns the size of t's dimension axis; for NoAxis it returns 1.
func RowsAt(t Tensor, axis int) (int64, error) {
	if axis == NoAxis {
		return 1, nil
	}
	if axis < 0 || axis >= len(t.Shape) {
		return 0, Invalidf("tensor %q: shape %v has no axis %d", t.Name, t.Shape, axis)
	}
	return t.Shape[axis], nil
}

// SameLayoutAt reports whether a and b can be stacked along axis: same
// name, data type, rank and other dimensions. For NoAxis they must be equal
// in shape and data, since one copy stands for both.
func SameLayoutAt(a, b Tensor, axis int) bool {
	if axis == 0 {
		return SameLayout(a, b)
	}
	if a.Name != b.Name || a.DataType != b.DataType || len(a.Shape) != len(b.Shape) {
		return false
	}
	if axis == NoAxis {
		for i := range a.Shape {
			if a.Shape[i] != b.Shape[i] {
				return false
			}
		}
		return string(a.Data) == string(b.Data)
	}
	if axis >= len(a.Shape) {
		return false
	}
	for i := range a.Shape {
		if i != axis && a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// axisBlocks returns, for a fixed-width tensor cut along axis, the number of
// blocks before the axis (outer) and the bytes of one index along the axis
// in one block (step).
func axisBlocks(t Tensor, axis int) (outer int64, step int64, err error) {
	outer, err = ElementCount(t.Shape[:axis])
	if err != nil {
		return 0, 0, err
	}
	inner, err := ElementCount(t.Shape[axis+1:])
	if err != nil {
		return 0, 0, err
	}
	return outer, inner * int64(t.DataType.Size()), nil
}

// ConcatAt stacks parts along axis into buf (grown when too small). Axis 0
// is Concat; NoAxis returns the first part, which all parts equal
// (SameLayoutAt). Other axes need a fixed-width data type.
func ConcatAt(parts []Tensor, axis int, buf []byte) (Tensor, error) {
	if axis == 0 {
		return Concat(parts, buf)
	}
	if len(parts) == 0 {
		return Tensor{}, fmt.Errorf("tensor: concat of nothing")
	}
	first := parts[0]
	for i, p := range parts {
		if !SameLayoutAt(first, p, axis) {
			return Tensor{}, Invalidf("tensor %q: part %d shape %v %s cannot be stacked with shape %v %s along axis %d",
				first.Name, i, p.Shape, p.DataType, first.Shape, first.DataType, axis)
		}
	}
	if axis == NoAxis || len(parts) == 1 {
		return first, nil
	}
	if first.DataType == Bytes {
		return Tensor{}, Invalidf("tensor %q: BYTES tensors stack only along axis 0", first.Name)
	}
	outer, step, err := axisBlocks(first, axis)
	if err != nil {
		return Tensor{}, err
	}
	var rows int64
	size := ConcatSize(parts)
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:0]
	for _, p := range parts {
		rows += p.Shape[axis]
	}
	for o := range outer {
		for _, p := range parts {
			n := p.Shape[axis] * step
			buf = append(buf, p.Data[o*n:(o+1)*n]...)
		}
	}
	shape := append([]int64(nil), first.Shape...)
	shape[axis] = rows
	return Tensor{Name: first.Name, DataType: first.DataType, Shape: shape, Data: buf}, nil
}

// SplitAt cuts t along axis into len(rows) tensors written to dst. Axis 0 is
// SplitInto (views); NoAxis gives every part t itself; other axes copy.
func SplitAt(dst []Tensor, t Tensor, axis int, rows []int64) error {
	if axis == 0 {
		return SplitInto(dst, t, rows)
	}
	if len(dst) != len(rows) {
		return fmt.Errorf("tensor: split into %d parts with %d row counts", len(dst), len(rows))
	}
	if axis == NoAxis {
		for i := range dst {
			dst[i] = t
		}
		return nil
	}
	total, err := RowsAt(t, axis)
	if err != nil {
		return err
	}
	if t.DataType == Bytes {
		return Invalidf("tensor %q: BYTES tensors split only along axis 0", t.Name)
	}
	var sum int64
	for _, r := range rows {
		if r < 0 {
			return fmt.Errorf("tensor %q: negative row count %d", t.Name, r)
		}
		sum += r
	}
	if sum != total {
		return fmt.Errorf("tensor %q: split rows sum to %d, tensor has %d along axis %d", t.Name, sum, total, axis)
	}
	outer, step, err := axisBlocks(t, axis)
	if err != nil {
		return err
	}
	if int64(len(t.Data)) != outer*total*step {
		return Invalidf("tensor %q: data does not match shape %v", t.Name, t.Shape)
	}
	var off int64
	for i, r := range rows {
		shape := append([]int64(nil), t.Shape...)
		shape[axis] = r
		data := make([]byte, 0, outer*r*step)
		for o := range outer {
			base := o*total*step + off
			data = append(data, t.Data[base:base+r*step]...)
		}
		dst[i] = Tensor{Name: t.Name, DataType: t.DataType, Shape: shape, Data: data}
		off += r * step
	}
	return nil
}
