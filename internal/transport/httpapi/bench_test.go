package httpapi

import (
	"strconv"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/transport"
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
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeInferRequest(c.body, -1, "", transport.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
