package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Golden is one golden test file: a v2 request, the response's expected
// outputs, and how far a number may stray from its expected value.
type Golden struct {
	// Request is a v2 inference request body: its inputs and, optionally,
	// the outputs to return.
	Request struct {
		Inputs  []dataset.JSONTensor `json:"inputs"`
		Outputs []struct {
			Name string `json:"name"`
		} `json:"outputs,omitempty"`
	} `json:"request"`
	// Expected is the part of a v2 response that must match: each named
	// output's datatype, shape and data.
	Expected struct {
		Outputs []dataset.JSONTensor `json:"outputs"`
	} `json:"expected"`
	// Tolerance bounds the difference of each number: |got - want| <=
	// Absolute + Relative*|want|. Zero for both means exact. BYTES
	// outputs always compare exactly.
	Tolerance struct {
		Absolute float64 `json:"absolute"`
		Relative float64 `json:"relative"`
	} `json:"tolerance"`
}

// maxDiffLines bounds the differing elements a failure lists.
const maxDiffLines = 8

// readGolden reads and decodes a golden test strictly: unknown fields are
// errors, so a typo cannot turn a test into one that always passes.
func readGolden(path string) (Golden, []tensor.Tensor, []tensor.Tensor, error) {
	var g Golden
	b, err := os.ReadFile(path)
	if err != nil {
		return g, nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return g, nil, nil, fmt.Errorf("not a golden test: %w", err)
	}
	if len(g.Request.Inputs) == 0 {
		return g, nil, nil, fmt.Errorf("request has no inputs")
	}
	if len(g.Expected.Outputs) == 0 {
		return g, nil, nil, fmt.Errorf("expected has no outputs: a test that compares nothing passes always")
	}
	if g.Tolerance.Absolute < 0 || g.Tolerance.Relative < 0 {
		return g, nil, nil, fmt.Errorf("tolerance must be >= 0")
	}
	in := make([]tensor.Tensor, len(g.Request.Inputs))
	for i, j := range g.Request.Inputs {
		if in[i], err = j.Tensor(); err != nil {
			return g, nil, nil, fmt.Errorf("request: %w", err)
		}
	}
	want := make([]tensor.Tensor, len(g.Expected.Outputs))
	for i, j := range g.Expected.Outputs {
		if want[i], err = j.Tensor(); err != nil {
			return g, nil, nil, fmt.Errorf("expected: %w", err)
		}
	}
	return g, in, want, nil
}

// compare reports how got differs from want beyond the tolerance, as
// readable lines; "" when they match. got holds the outputs by name.
func compare(got map[string]tensor.Tensor, want []tensor.Tensor, abs, rel float64) string {
	var b strings.Builder
	for _, w := range want {
		g, ok := got[w.Name]
		if !ok {
			fmt.Fprintf(&b, "output %q: missing from the response\n", w.Name)
			continue
		}
		if g.DataType != w.DataType || !equalShape(g.Shape, w.Shape) {
			fmt.Fprintf(&b, "output %q: got %s %v, want %s %v\n", w.Name, g.DataType, g.Shape, w.DataType, w.Shape)
			continue
		}
		if w.DataType == tensor.Bytes {
			n, _ := tensor.ElementCount(w.Shape)
			gs, err1 := tensor.BytesElements(g.Data, n)
			ws, err2 := tensor.BytesElements(w.Data, n)
			if err1 != nil || err2 != nil {
				fmt.Fprintf(&b, "output %q: malformed BYTES data\n", w.Name)
				continue
			}
			bad := 0
			for i := range ws {
				if !bytes.Equal(gs[i], ws[i]) {
					if bad < maxDiffLines {
						fmt.Fprintf(&b, "  %q%v: got %q, want %q\n", w.Name, index(w.Shape, i), gs[i], ws[i])
					}
					bad++
				}
			}
			if bad > 0 {
				fmt.Fprintf(&b, "output %q: %d of %d elements differ\n", w.Name, bad, len(ws))
			}
			continue
		}
		gv, err1 := dataset.Float64s(g)
		wv, err2 := dataset.Float64s(w)
		if err1 != nil || err2 != nil {
			fmt.Fprintf(&b, "output %q: not comparable\n", w.Name)
			continue
		}
		var lines strings.Builder
		bad, worst := 0, 0.0
		for i := range wv {
			d := math.Abs(gv[i] - wv[i])
			same := d <= abs+rel*math.Abs(wv[i]) || math.IsNaN(gv[i]) && math.IsNaN(wv[i])
			if same {
				continue
			}
			if bad < maxDiffLines {
				fmt.Fprintf(&lines, "  %s%v: got %v, want %v (off by %.3g)\n", w.Name, index(w.Shape, i), gv[i], wv[i], d)
			}
			worst = max(worst, d)
			bad++
		}
		if bad > 0 {
			fmt.Fprintf(&b, "output %q: %d of %d elements differ beyond the tolerance (absolute %g, relative %g); largest difference %.3g\n%s",
				w.Name, bad, len(wv), abs, rel, worst, lines.String())
			if bad > maxDiffLines {
				fmt.Fprintf(&b, "  … and %d more\n", bad-maxDiffLines)
			}
		}
	}
	return b.String()
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// index turns a flat element position into its coordinates in shape.
func index(shape []int64, flat int) []int64 {
	out := make([]int64, len(shape))
	f := int64(flat)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] > 0 {
			out[i] = f % shape[i]
			f /= shape[i]
		}
	}
	return out
}
