package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Shape of the classifier's reference data.
const (
	referenceRows     = 1000
	referenceFeatures = 64
)

// classifierReference is the classifier's reference data as an NPY file:
// referenceRows rows of referenceFeatures FP32 values, each drawn from
// N(0, 1) with a fixed seed. `onnxserve profile` makes each version's
// profile.json from it. The normal draws are Box–Muller over PCG's
// specified output, so the bytes never depend on the Go release.
func classifierReference() []byte {
	r := rand.New(rand.NewPCG(20, 1))
	uniform := func() float64 { return (float64(r.Uint64()>>11) + 0.5) / (1 << 53) }
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", referenceRows, referenceFeatures)
	// The header, with its magic, version and length, fills a multiple of
	// 64 bytes and ends in a newline.
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	out := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(out[8:], uint16(len(header)))
	out = append(out, header...)
	for i := 0; i < referenceRows*referenceFeatures; i += 2 {
		u1, u2 := uniform(), uniform()
		rad := math.Sqrt(-2 * math.Log(u1))
		for _, x := range []float64{rad * math.Cos(2*math.Pi*u2), rad * math.Sin(2*math.Pi*u2)} {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(x)))
		}
	}
	return out
}
