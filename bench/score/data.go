package main

import (
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// featureValues returns a seeded source of classifier features: uniform
// in [-1, 1), rounded to four decimals, so that their text (CSV) and
// binary (NPY) forms hold the same float32 values.
func featureValues(seed uint64) func() float32 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	return func() float32 { return float32(math.Round((rng.Float64()*2-1)*1e4) / 1e4) }
}

// unitValues returns a seeded source of values uniform in [0, 1), as
// ortbench fills its inputs.
func unitValues(seed uint64) func() float32 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	return rng.Float32
}

// writeNPY writes an NPY 1.0 file of FP32 rows of shape row. Written by
// hand rather than with a library (github.com/sbinet/npyio): the format is
// a ten-byte preamble, a padded Python dict and the raw little-endian data,
// and the benchmark needs only this one case.
func writeNPY(w io.Writer, rows int, row []int, next func() float32) error {
	dims := []string{strconv.Itoa(rows)}
	per := 1
	for _, d := range row {
		dims = append(dims, strconv.Itoa(d))
		per *= d
	}
	if _, err := w.Write(npyHeader(dims)); err != nil {
		return err
	}
	buf := make([]byte, 4*per)
	for range rows {
		for i := range per {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(next()))
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// npyHeader is the preamble and dict of a C-order little-endian FP32
// array, padded so the data starts at a multiple of 64 bytes.
func npyHeader(dims []string) []byte {
	shape := strings.Join(dims, ", ")
	if len(dims) == 1 {
		shape += ","
	}
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shape)
	pad := (64 - (10+len(dict)+1)%64) % 64
	dict += strings.Repeat(" ", pad) + "\n"
	out := append([]byte("\x93NUMPY"), 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(dict)))
	return append(out, dict...)
}

// writeCSV writes a header f0..f(width-1) and rows of width numbers, each
// the shortest text of its float32.
func writeCSV(w io.Writer, rows, width int, next func() float32) error {
	cw := csv.NewWriter(w)
	rec := make([]string, width)
	for i := range rec {
		rec[i] = "f" + strconv.Itoa(i)
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for range rows {
		for i := range rec {
			rec[i] = strconv.FormatFloat(float64(next()), 'g', -1, 32)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeJSONL writes rows of {"INPUT": [width numbers]}, each the shortest
// text of its float32.
func writeJSONL(w io.Writer, rows, width int, next func() float32) error {
	var b []byte
	for range rows {
		b = append(b[:0], `{"INPUT": [`...)
		for i := range width {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = strconv.AppendFloat(b, float64(next()), 'g', -1, 32)
		}
		b = append(b, "]}\n"...)
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
