package httpapi

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

func itoa(n int) string { return strconv.Itoa(n) }

// fp32Request builds a one-input FP32 request of n elements.
func fp32Request(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"id":"r1","inputs":[{"name":"INPUT0","shape":[1,`)
	b.WriteString(itoa(n))
	b.WriteString(`],"datatype":"FP32","data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("0.")
		b.WriteString(itoa(i%1000 + 1))
	}
	b.WriteString(`]}],"outputs":[{"name":"OUTPUT0"}]}`)
	return []byte(b.String())
}

// fp32RandomRequest builds a one-input FP32 request of n random values in
// [0,1) printed as clients print float32 values: the shortest text that
// reads back as the same float32 (0.83217114, 5.4231636e-05). The seed is
// fixed so every run decodes the same document.
func fp32RandomRequest(n int) []byte {
	return randomFloatRequest(n, "FP32", 32)
}

// randomFloatRequest builds a request of n random values in [0,1) of
// datatype dt, printed in their shortest form for bitSize bits.
func randomFloatRequest(n int, dt string, bitSize int) []byte {
	rng := rand.New(rand.NewPCG(7, 11))
	b := []byte(`{"id":"r1","inputs":[{"name":"INPUT0","shape":[1,` + itoa(n) + `],"datatype":"` + dt + `","data":[`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		if bitSize == 32 {
			b = strconv.AppendFloat(b, float64(rng.Float32()), 'g', -1, 32)
		} else {
			b = strconv.AppendFloat(b, rng.Float64(), 'g', -1, 64)
		}
	}
	return append(b, `]}],"outputs":[{"name":"OUTPUT0"}]}`...)
}

func int32Request(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"inputs":[{"name":"INPUT0","shape":[1,` + itoa(n) + `],"datatype":"INT32","data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(itoa(i * 7919))
	}
	b.WriteString(`]}]}`)
	return []byte(b.String())
}

func BenchmarkDecodeJSON(b *testing.B) {
	cases := []struct {
		name string
		body []byte
	}{
		{"INT32x16", int32Request(16)},
		{"FP32x3x48x192", fp32Request(3 * 48 * 192)},
		{"FP32x3x48x192_shortest", fp32RandomRequest(3 * 48 * 192)},
		{"FP64x3x48x192_shortest", randomFloatRequest(3*48*192, "FP64", 64)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeInferRequest(c.body, -1, "", guard.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
