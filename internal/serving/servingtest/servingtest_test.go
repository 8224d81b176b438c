package servingtest

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// A Model is what the serving core loads.
var _ serving.Model = (*Model)(nil)

func int32s(vs ...int32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}

func TestSimple(t *testing.T) {
	m := Simple()
	a, b := make([]int32, 32), make([]int32, 32)
	for i := range a {
		a[i], b[i] = int32(i*7-50), int32(3-i)
	}
	shape := []int64{2, 16}
	out, err := m.Run(context.Background(), []tensor.Tensor{
		{Name: "INPUT0", DataType: tensor.Int32, Shape: shape, Data: int32s(a...)},
		{Name: "INPUT1", DataType: tensor.Int32, Shape: shape, Data: int32s(b...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	sum, diff := make([]int32, 32), make([]int32, 32)
	for i := range a {
		sum[i], diff[i] = a[i]+b[i], a[i]-b[i]
	}
	if len(out) != 2 || out[0].Name != "OUTPUT0" || out[1].Name != "OUTPUT1" ||
		!slices.Equal(out[0].Shape, shape) || !slices.Equal(out[0].Data, int32s(sum...)) || !slices.Equal(out[1].Data, int32s(diff...)) {
		t.Fatalf("Run = %+v", out)
	}
	if len(m.Inputs()) != 2 || len(m.Outputs()) != 2 || m.Close() != nil {
		t.Fatalf("specs %v %v", m.Inputs(), m.Outputs())
	}
}

func TestModelRunsItsFunction(t *testing.T) {
	boom := errors.New("boom")
	m := &Model{RunFunc: func(context.Context, []tensor.Tensor) ([]tensor.Tensor, error) { return nil, boom }}
	if _, err := m.Run(context.Background(), nil); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
}
