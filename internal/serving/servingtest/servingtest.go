// Package servingtest holds model fakes for tests of the front ends: a
// serving.Model whose run is a Go function, so a test decides exactly what
// a run returns, blocks on or fails with, and the classic "simple" model
// built on it. Only tests may import it; tests of the whole server use
// the real ONNX Runtime instead.
package servingtest

import (
	"context"
	"encoding/binary"
	"slices"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Model is a serving.Model whose Run calls RunFunc. It is safe for
// concurrent use when RunFunc is.
type Model struct {
	In, Out []tensor.Spec
	RunFunc func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error)
}

// Inputs returns the input specs.
func (m *Model) Inputs() []tensor.Spec { return m.In }

// Outputs returns the output specs.
func (m *Model) Outputs() []tensor.Spec { return m.Out }

// Close does nothing: a fake holds no resources.
func (m *Model) Close() error { return nil }

// Run calls RunFunc.
func (m *Model) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	return m.RunFunc(ctx, in)
}

// Simple is the classic "simple" example on INT32 [-1,16]: OUTPUT0 =
// INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, element by element.
func Simple() *Model {
	spec := func(name string) tensor.Spec {
		return tensor.Spec{Name: name, DataType: tensor.Int32, Shape: []int64{-1, 16}}
	}
	return &Model{
		In:  []tensor.Spec{spec("INPUT0"), spec("INPUT1")},
		Out: []tensor.Spec{spec("OUTPUT0"), spec("OUTPUT1")},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			a, b := in[0].Data, in[1].Data
			sum, diff := make([]byte, len(a)), make([]byte, len(a))
			for i := 0; i+4 <= len(a); i += 4 {
				x, y := int32(binary.LittleEndian.Uint32(a[i:])), int32(binary.LittleEndian.Uint32(b[i:]))
				binary.LittleEndian.PutUint32(sum[i:], uint32(x+y))
				binary.LittleEndian.PutUint32(diff[i:], uint32(x-y))
			}
			shape := slices.Clone(in[0].Shape)
			return []tensor.Tensor{
				{Name: "OUTPUT0", DataType: tensor.Int32, Shape: shape, Data: sum},
				{Name: "OUTPUT1", DataType: tensor.Int32, Shape: shape, Data: diff},
			}, nil
		},
	}
}
