package batcher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

const (
	// testTimeout bounds every wait for something that must happen.
	testTimeout = 10 * time.Second
	// testShortTimeout is how long a test waits for something that must
	// not happen.
	testShortTimeout = 50 * time.Millisecond
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ids builds an INT64 tensor of len(ids) rows and cols columns; row i holds
// ids[i]*16 + c in column c, so every value names its request and row.
func ids(name string, cols int, rowIDs ...int64) tensor.Tensor {
	data := make([]byte, 0, len(rowIDs)*cols*8)
	for _, id := range rowIDs {
		for c := range cols {
			data = binary.LittleEndian.AppendUint64(data, uint64(id*16+int64(c)))
		}
	}
	return tensor.Tensor{Name: name, DataType: tensor.Int64, Shape: []int64{int64(len(rowIDs)), int64(cols)}, Data: data}
}

// ids32 is ids with INT32 elements, for a second data type.
func ids32(name string, cols int, rowIDs ...int64) tensor.Tensor {
	data := make([]byte, 0, len(rowIDs)*cols*4)
	for _, id := range rowIDs {
		for c := range cols {
			data = binary.LittleEndian.AppendUint32(data, uint32(id*16+int64(c)))
		}
	}
	return tensor.Tensor{Name: name, DataType: tensor.Int32, Shape: []int64{int64(len(rowIDs)), int64(cols)}, Data: data}
}

func values(t tensor.Tensor) []int64 {
	var out []int64
	switch t.DataType {
	case tensor.Int64:
		for i := 0; i+8 <= len(t.Data); i += 8 {
			out = append(out, int64(binary.LittleEndian.Uint64(t.Data[i:])))
		}
	case tensor.Int32:
		for i := 0; i+4 <= len(t.Data); i += 4 {
			out = append(out, int64(int32(binary.LittleEndian.Uint32(t.Data[i:]))))
		}
	}
	return out
}

// rowIDs returns the request-row ids held in t's first column.
func rowIDs(t tensor.Tensor) []int64 {
	if len(t.Shape) < 2 || t.Shape[1] == 0 {
		return nil
	}
	v := values(t)
	cols := int(t.Shape[1])
	var out []int64
	for i := 0; i < len(v); i += cols {
		out = append(out, v[i]/16)
	}
	return out
}

// addOne is the fake model: for every input x it returns an output
// "x_out" of the same shape and type with every element plus one.
func addOne(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, len(in))
	for i, t := range in {
		data := make([]byte, len(t.Data))
		switch t.DataType {
		case tensor.Int64:
			for j := 0; j+8 <= len(t.Data); j += 8 {
				binary.LittleEndian.PutUint64(data[j:], binary.LittleEndian.Uint64(t.Data[j:])+1)
			}
		case tensor.Int32:
			for j := 0; j+4 <= len(t.Data); j += 4 {
				binary.LittleEndian.PutUint32(data[j:], binary.LittleEndian.Uint32(t.Data[j:])+1)
			}
		default:
			return nil, fmt.Errorf("fake model: unsupported type %s", t.DataType)
		}
		out[i] = tensor.Tensor{Name: t.Name + "_out", DataType: t.DataType, Shape: append([]int64(nil), t.Shape...), Data: data}
	}
	return out, nil
}

// checkAddOne asserts that out is addOne of in, input by input in name
// order.
func checkAddOne(t *testing.T, in, out []tensor.Tensor) {
	t.Helper()
	if len(out) != len(in) {
		t.Errorf("got %d outputs for %d inputs", len(out), len(in))
		return
	}
	for i := range in {
		if out[i].Name != in[i].Name+"_out" {
			t.Errorf("output %d is %q, want %q", i, out[i].Name, in[i].Name+"_out")
			continue
		}
		if fmt.Sprint(out[i].Shape) != fmt.Sprint(in[i].Shape) {
			t.Errorf("output %q shape %v, want %v", out[i].Name, out[i].Shape, in[i].Shape)
		}
		got, want := values(out[i]), values(in[i])
		if len(got) != len(want) {
			t.Errorf("output %q has %d values, want %d", out[i].Name, len(got), len(want))
			continue
		}
		for j := range want {
			if got[j] != want[j]+1 {
				t.Errorf("output %q value %d = %d, want %d (another request's rows?)", out[i].Name, j, got[j], want[j]+1)
				break
			}
		}
	}
}

type runnerFunc func(context.Context, []tensor.Tensor) ([]tensor.Tensor, error)

func (f runnerFunc) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	return f(ctx, in)
}

// batchRecord is what the recorder saw of one Run.
type batchRecord struct {
	at     time.Time
	rows   int64
	ids    []int64 // row ids of the first input
	layout string  // names, types and shapes of the inputs
}

// recorder is a Runner that records every batch and then delegates.
type recorder struct {
	next    runnerFunc
	mu      sync.Mutex
	batches []batchRecord
	ran     chan struct{} // one value per Run started, if not nil; never full in a test
}

func newRecorder(next runnerFunc) *recorder {
	return &recorder{next: next, ran: make(chan struct{}, 1024)}
}

func (r *recorder) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	rec := batchRecord{at: time.Now()}
	for i, t := range in {
		if len(t.Shape) == 0 {
			rec.layout += fmt.Sprintf("%s:%s:scalar;", t.Name, t.DataType)
			continue
		}
		if i == 0 {
			rec.rows = t.Shape[0]
			rec.ids = rowIDs(t)
		}
		rec.layout += fmt.Sprintf("%s:%s:%v;", t.Name, t.DataType, t.Shape[1:])
	}
	r.mu.Lock()
	r.batches = append(r.batches, rec)
	r.mu.Unlock()
	if r.ran != nil {
		r.ran <- struct{}{}
	}
	return r.next(ctx, in)
}

func (r *recorder) records() []batchRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]batchRecord(nil), r.batches...)
}

// waitRan waits for the next Run to start.
func (r *recorder) waitRan(t *testing.T) {
	t.Helper()
	select {
	case <-r.ran:
	case <-time.After(testTimeout):
		t.Fatal("runner was not called")
	}
}

// blocking returns a runner that signals started and then waits for
// release (or, if honourCtx, for its context to end) before adding one.
func blocking(started chan<- struct{}, release <-chan struct{}, honourCtx bool) runnerFunc {
	return func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
		started <- struct{}{}
		done := ctx.Done()
		if !honourCtx {
			done = nil
		}
		select {
		case <-release:
		case <-done:
			return nil, ctx.Err()
		}
		return addOne(ctx, in)
	}
}

type reply struct {
	out []tensor.Tensor
	err error
}

// submitAsync submits in from a new goroutine; the reply arrives on the
// returned channel.
func submitAsync(ctx context.Context, b *Batcher, in ...tensor.Tensor) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		out, err := b.Submit(ctx, in)
		ch <- reply{out, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan reply) reply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testTimeout):
		t.Fatal("no reply from Submit")
		return reply{}
	}
}

// notYet asserts that ch has no reply now.
func notYet(t *testing.T, ch <-chan reply, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: got a reply already (err %v)", what, r.err)
	default:
	}
}

func newBatcher(t *testing.T, r Runner, cfg Config) *Batcher {
	t.Helper()
	b, err := New(r, cfg, nil, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func mustClose(t *testing.T, b *Batcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := b.Inflight(); n != 0 {
		t.Errorf("Inflight after Close = %d, want 0", n)
	}
	if n := b.QueueDepth(); n != 0 {
		t.Errorf("QueueDepth after Close = %d, want 0", n)
	}
}

var errBoom = errors.New("boom")
