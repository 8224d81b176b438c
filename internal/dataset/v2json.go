package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// JSONTensor is one tensor in the v2 protocol's JSON form, as a request's
// "inputs" and a response's "outputs" hold it. Data is a flat or nested
// list in row-major order: numbers, booleans, or strings for BYTES.
type JSONTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	DataType   string          `json:"datatype"`
	Data       json.RawMessage `json:"data"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// Tensor converts j into a valid tensor: a known datatype, a shape without
// negative dimensions, and data that holds exactly the shape's elements.
func (j JSONTensor) Tensor() (tensor.Tensor, error) {
	dt, ok := tensor.ParseDataType(j.DataType)
	if !ok {
		return tensor.Tensor{}, tensor.Invalidf("tensor %q: unknown datatype %q", j.Name, j.DataType)
	}
	if j.Shape == nil {
		return tensor.Tensor{}, tensor.Invalidf("tensor %q: no shape", j.Name)
	}
	want, err := tensor.ElementCount(j.Shape)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("tensor %q: %w", j.Name, err)
	}
	data, _, n, err := flatten(j.Data, dt)
	if err != nil {
		return tensor.Tensor{}, tensor.Invalidf("tensor %q: %v", j.Name, err)
	}
	if n != want {
		return tensor.Tensor{}, tensor.Invalidf("tensor %q: shape %v holds %d elements, data has %d", j.Name, j.Shape, want, n)
	}
	t := tensor.Tensor{Name: j.Name, DataType: dt, Shape: j.Shape, Data: data}
	return t, t.Validate()
}

// flatten decodes a JSON value (a scalar or a nested list) into tensor
// data of type dt, returning the nesting's shape (nil for a scalar; a
// ragged list is an error) and the element count.
func flatten(raw json.RawMessage, dt tensor.DataType) (data []byte, shape []int64, n int64, err error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil, 0, fmt.Errorf("no data")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, 0, fmt.Errorf("data is not valid JSON: %v", err)
	}
	f := flattener{dt: dt}
	if err := f.walk(v, 0); err != nil {
		return nil, nil, 0, err
	}
	return f.data, f.shape, f.n, nil
}

type flattener struct {
	dt    tensor.DataType
	data  []byte
	shape []int64
	depth int // depth of the first leaf; -1 until one is seen
	n     int64
	seen  bool
}

func (f *flattener) walk(v any, depth int) error {
	list, isList := v.([]any)
	if !isList {
		if !f.seen {
			f.seen, f.depth = true, depth
		} else if depth != f.depth {
			return fmt.Errorf("data is a ragged list: values at depths %d and %d", f.depth, depth)
		}
		var err error
		switch x := v.(type) {
		case json.Number:
			if f.dt == tensor.Bytes {
				return fmt.Errorf("element %d: %s is a number, BYTES wants a string", f.n, x)
			}
			f.data, err = appendText(f.data, f.dt, x.String())
		case bool:
			if f.dt != tensor.Bool {
				return fmt.Errorf("element %d: a boolean for %s", f.n, f.dt)
			}
			f.data = append(f.data, map[bool]byte{false: 0, true: 1}[x])
		case string:
			if f.dt != tensor.Bytes {
				return fmt.Errorf("element %d: string %q for %s", f.n, x, f.dt)
			}
			f.data = tensor.AppendBytesElement(f.data, []byte(x))
		default:
			return fmt.Errorf("element %d: %v is not a value of %s", f.n, v, f.dt)
		}
		if err != nil {
			return fmt.Errorf("element %d: %w", f.n, err)
		}
		f.n++
		return nil
	}
	if depth == len(f.shape) {
		if f.seen {
			return fmt.Errorf("data is a ragged list: a list where a value was")
		}
		f.shape = append(f.shape, int64(len(list)))
	} else if f.shape[depth] != int64(len(list)) {
		return fmt.Errorf("data is a ragged list: lengths %d and %d at depth %d", f.shape[depth], len(list), depth)
	}
	for _, e := range list {
		if err := f.walk(e, depth+1); err != nil {
			return err
		}
	}
	return nil
}
