package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TieTolerance is how close to the best rate a smaller batch size must
// come to be chosen instead: within it, two sizes count as tied, and the
// smaller one wins, as it answers sooner.
const TieTolerance = 0.02

// maxTimedRuns bounds the timed runs of one batch size, so that a fast
// model is measured in milliseconds rather than the whole budget.
const maxTimedRuns = 64

// BatchTiming is one batch size's measurement.
type BatchTiming struct {
	Size int
	// Runs is how many timed runs the rate comes from; 0 when the budget
	// was spent before this size was reached.
	Runs int
	// PerRun is the mean time of one run.
	PerRun time.Duration
	// ItemsPerSecond is Size × Runs over the time those runs took.
	ItemsPerSecond float64
}

// BatchMeasurement is what MeasureBatchSizes found. A plain value, safe
// for concurrent reads.
type BatchMeasurement struct {
	// Timings are the sizes measured, ascending.
	Timings []BatchTiming
	// Best is the size with the most items per second; a smaller size
	// within TieTolerance of it is chosen instead.
	Best int
	// Took is the time the whole measurement took.
	Took time.Duration
}

// String summarises m on one line, for logs and the repository index.
func (m BatchMeasurement) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch size %d chosen by measurement (items/s:", m.Best)
	for _, t := range m.Timings {
		if t.Runs == 0 {
			fmt.Fprintf(&b, " %d=not measured", t.Size)
			continue
		}
		fmt.Fprintf(&b, " %d=%.0f", t.Size, t.ItemsPerSecond)
	}
	fmt.Fprintf(&b, "; took %s)", m.Took.Round(time.Millisecond))
	return b.String()
}

// MeasureBatchSizes times r at the batch sizes 1, 2, 4, ... up to limit
// (limit itself included) with zero-valued inputs shaped by specs, the
// batch on each input's axis in axes (nil: the first), open non-batch
// dimensions taking dims[name] (1 where dims names none), and
// returns each size's items per second and the best size. Each size gets
// one untimed run, then timed runs until its share of budget is spent (at
// least one, at most maxTimedRuns); sizes not reached within budget are
// listed unmeasured. It is the measurement behind max_batch_size: auto and
// is meant for offline scoring too; r must accept a batch dimension on
// every input.
func MeasureBatchSizes(ctx context.Context, r batcher.Runner, specs []tensor.Spec, dims map[string][]int64, axes []int, limit int, budget time.Duration) (BatchMeasurement, error) {
	if limit < 1 {
		return BatchMeasurement{}, fmt.Errorf("measure batch sizes: limit %d is below 1", limit)
	}
	var sizes []int
	for n := 1; n < limit; n *= 2 {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, limit)
	share := budget / time.Duration(len(sizes))
	start := time.Now()
	m := BatchMeasurement{Timings: make([]BatchTiming, len(sizes))}
	for i, n := range sizes {
		m.Timings[i].Size = n
		if i > 0 && time.Since(start) >= budget {
			continue
		}
		in, err := ZeroInputs(specs, dims, axes, true, n)
		if err != nil {
			return BatchMeasurement{}, err
		}
		if _, err := r.Run(ctx, in); err != nil {
			return BatchMeasurement{}, fmt.Errorf("batch size %d: %w", n, err)
		}
		t0 := time.Now()
		runs := 0
		for runs < maxTimedRuns && (runs == 0 || time.Since(t0) < share) {
			if err := ctx.Err(); err != nil {
				return BatchMeasurement{}, err
			}
			if _, err := r.Run(ctx, in); err != nil {
				return BatchMeasurement{}, fmt.Errorf("batch size %d: %w", n, err)
			}
			runs++
		}
		took := time.Since(t0)
		m.Timings[i].Runs = runs
		m.Timings[i].PerRun = took / time.Duration(runs)
		m.Timings[i].ItemsPerSecond = float64(n*runs) / max(took.Seconds(), 1e-9)
	}
	m.Took = time.Since(start)
	m.Best = bestSize(m.Timings)
	return m, nil
}

// bestSize picks the smallest measured size within TieTolerance of the
// highest rate.
func bestSize(ts []BatchTiming) int {
	top := 0.0
	for _, t := range ts {
		if t.Runs > 0 {
			top = max(top, t.ItemsPerSecond)
		}
	}
	for _, t := range ts {
		if t.Runs > 0 && t.ItemsPerSecond >= top*(1-TieTolerance) {
			return t.Size
		}
	}
	return 1
}

// ZeroInputs builds zero-valued inputs for specs (BYTES elements "0"),
// as warmup, the batch size measurement and `onnxserve check` run them:
// with batched, each input's batch axis (axes[i], the first where axes
// does not say; none for tensor.NoAxis) is rows; other open dimensions
// come from dims (the shape without the batch dimension, by input name)
// or are 1.
func ZeroInputs(specs []tensor.Spec, dims map[string][]int64, axes []int, batched bool, rows int) ([]tensor.Tensor, error) {
	in := make([]tensor.Tensor, len(specs))
	for i, sp := range specs {
		shape := slices.Clone(sp.Shape)
		axis := tensor.NoAxis
		if a := axisAt(axes, i); batched && a != tensor.NoAxis && a < len(shape) {
			axis = a
		}
		if d, ok := dims[sp.Name]; ok {
			rest := len(shape)
			if axis != tensor.NoAxis {
				rest--
			}
			if len(d) != rest {
				return nil, fmt.Errorf("warmup.dims of %q: %d dimensions, the input has %d besides the batch dimension", sp.Name, len(d), rest)
			}
			k := 0
			for j := range shape {
				if j == axis {
					continue
				}
				if shape[j] >= 0 && shape[j] != d[k] {
					return nil, fmt.Errorf("warmup.dims of %q: dimension %d is %d, the model fixes it at %d", sp.Name, k, d[k], shape[j])
				}
				shape[j] = d[k]
				k++
			}
		}
		if axis != tensor.NoAxis {
			shape[axis] = int64(rows)
		}
		for j, d := range shape {
			if d < 0 {
				shape[j] = 1
			}
		}
		n, err := tensor.ElementCount(shape)
		if err != nil {
			return nil, err
		}
		t := tensor.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: shape}
		if sp.DataType == tensor.Bytes {
			for range n {
				t.Data = tensor.AppendBytesElement(t.Data, []byte("0"))
			}
		} else {
			t.Data = make([]byte, n*int64(sp.DataType.Size()))
		}
		in[i] = t
	}
	return in, nil
}

// errUnknownDimsInput is wrapped when warmup.dims names no input of the
// model.
var errUnknownDimsInput = errors.New("warmup.dims names an input the model does not have")
