//go:build !race

package drift

import (
	"math/rand/v2"
	"testing"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestValidateAllocatesNothing: the validation rules run on every request,
// so an accepted request costs no allocation.
func TestValidateAllocatesNothing(t *testing.T) {
	prof := referenceProfile(t, 14)
	h := NewHub(zap.NewNop(), nil)
	val, err := h.Prepare(info(versionDir(t, prof), parseConfig(t, "validation: {nan: reject, range: profile, range_tolerance: 1}")))
	if err != nil {
		t.Fatal(err)
	}
	in := []tensor.Tensor{fp32("INPUT", 8, features, normalRows(rand.New(rand.NewPCG(15, 15)), 8, -1))}
	if err := val.Validate(in); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = val.Validate(in) }); n != 0 {
		t.Errorf("Validate allocates %g times per request", n)
	}
}

func BenchmarkValidate(b *testing.B) {
	prof := referenceProfile(b, 14)
	h := NewHub(zap.NewNop(), nil)
	val, err := h.Prepare(info(versionDir(b, prof), parseConfig(b, "validation: {nan: count, range: profile}")))
	if err != nil {
		b.Fatal(err)
	}
	in := []tensor.Tensor{fp32("INPUT", 1, features, normalRows(rand.New(rand.NewPCG(16, 16)), 1, -1))}
	b.ReportAllocs()
	for b.Loop() {
		_ = val.Validate(in)
	}
}
