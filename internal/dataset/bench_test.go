package dataset

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// benchLine is a classifier line: an id and 64 numbers of four decimals.
func benchLine() []byte {
	var b strings.Builder
	b.WriteString(`{"id": "row-123", "INPUT": [`)
	for i := range 64 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.4f", float64(i*37%200-100)/97)
	}
	b.WriteString("]}\n")
	return []byte(b.String())
}

// BenchmarkJSONLLine decodes one classifier line the way the reader did
// before, with encoding/json (parse), and with parseFast: the measurement
// parseFast's doc comment records.
func BenchmarkJSONLLine(b *testing.B) {
	line := benchLine()
	opt := ReadOptions{IDColumn: "id", Inputs: []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}}}}
	b.Run("encoding_json", func(b *testing.B) {
		r := newJSONLReader(opt)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := r.parse(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		r := newJSONLReader(opt)
		bufs := [][]byte{make([]byte, 0, 256)}
		b.ReportAllocs()
		for b.Loop() {
			bufs[0] = bufs[0][:0]
			if _, ok := r.parseFast(line, bufs); !ok {
				b.Fatal("declined")
			}
		}
	})
}

// BenchmarkParseFloat parses a CSV field with strconv and with parseFloat.
func BenchmarkParseFloat(b *testing.B) {
	fields := []string{"-0.3814", "0.9999", "12.5", "-1.0309", "0.0412"}
	b.Run("strconv", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := strconv.ParseFloat(fields[i%len(fields)], 64); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parseFloat", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := parseFloat(fields[i%len(fields)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
