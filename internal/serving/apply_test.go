package serving

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestPlan(t *testing.T) {
	boom := errors.New("path escapes the repository")
	st := func(serving, failed map[int64]string, listed map[int64]State) loadedState {
		return loadedState{serving: serving, failed: failed, listed: listed}
	}
	tests := []struct {
		name string
		d    Desired
		st   loadedState
		want string // kind:number, in order
	}{
		{"startup", desired("m", batchingConfig(), dv(1, "p", "a"), dv(2, "p", "a")),
			st(nil, nil, nil), "load:1 load:2"},
		{"unchanged", desired("m", batchingConfig(), dv(1, "p", "a")),
			st(map[int64]string{1: "a/h"}, nil, map[int64]State{1: StateReady}), "keep:1"},
		{"file changed", desired("m", batchingConfig(), dv(1, "p", "b")),
			st(map[int64]string{1: "a/h"}, nil, map[int64]State{1: StateReady}), "reload:1"},
		{"config changed", Desired{Name: "m", Config: batchingConfig(), ConfigHash: "h2", Versions: []DesiredVersion{dv(1, "p", "a")}},
			st(map[int64]string{1: "a/h"}, nil, map[int64]State{1: StateReady}), "reload:1"},
		{"same bytes failed before, old serving", desired("m", batchingConfig(), dv(1, "p", "b")),
			st(map[int64]string{1: "a/h"}, map[int64]string{1: "b/h"}, map[int64]State{1: StateReady}), "hold:1"},
		{"same bytes failed before, nothing serving", desired("m", batchingConfig(), dv(2, "p", "b")),
			st(nil, map[int64]string{2: "b/h"}, map[int64]State{2: StateUnavailable}), "hold:2"},
		{"failed bytes replaced", desired("m", batchingConfig(), dv(2, "p", "c")),
			st(nil, map[int64]string{2: "b/h"}, map[int64]State{2: StateUnavailable}), "load:2"},
		{"unloadable", desired("m", batchingConfig(), DesiredVersion{Number: 3, Path: "p", Fingerprint: "a", Err: boom}),
			st(nil, nil, nil), "fail:3"},
		{"version removed", desired("m", batchingConfig(), dv(2, "p", "a")),
			st(map[int64]string{1: "a/h", 2: "a/h"}, nil, map[int64]State{1: StateReady, 2: StateReady}), "keep:2 retire:1"},
		{"failed version removed", desired("m", batchingConfig(), dv(1, "p", "a")),
			st(map[int64]string{1: "a/h"}, map[int64]string{4: "x/h"}, map[int64]State{1: StateReady, 4: StateUnavailable}), "keep:1 forget:4"},
		{"unloading version left alone", desired("m", batchingConfig()),
			st(nil, nil, map[int64]State{5: StateUnloading}), ""},
		{"broken config keeps what serves", Desired{Name: "m", ConfigErr: boom, Versions: []DesiredVersion{dv(1, "p", "a"), dv(2, "p", "a")}},
			st(map[int64]string{1: "a/h", 3: "a/h"}, nil, map[int64]State{1: StateReady, 3: StateReady}), "keep:1 unavailable:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range plan(tt.d, tt.st) {
				got = append(got, fmt.Sprintf("%s:%d", a.kind, a.number))
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("plan = %q, want %q", s, tt.want)
			}
		})
	}
}

func TestSameSignature(t *testing.T) {
	in := func(name string, dt tensor.DataType, shape ...int64) tensor.Spec {
		return tensor.Spec{Name: name, DataType: dt, Shape: shape}
	}
	base := []tensor.Spec{in("A", tensor.FP32, -1, 4), in("B", tensor.Int64, -1)}
	tests := []struct {
		name    string
		inputs  []tensor.Spec
		outputs []tensor.Spec
		want    string // "" for compatible
	}{
		{"identical", base, base, ""},
		{"input renamed", []tensor.Spec{in("X", tensor.FP32, -1, 4), base[1]}, base, `input "X" changed incompatibly`},
		{"input type", []tensor.Spec{in("A", tensor.FP64, -1, 4), base[1]}, base, `input "A" changed incompatibly: FP64`},
		{"input shape", []tensor.Spec{in("A", tensor.FP32, -1, 5), base[1]}, base, `input "A" changed incompatibly`},
		{"input added", append([]tensor.Spec{in("C", tensor.FP32, 1)}, base...), base, "3 inputs, was 2"},
		{"output removed", base, base[:1], "1 outputs, was 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &version{inputs: base, outputs: base}
			b := &version{inputs: tt.inputs, outputs: tt.outputs}
			err := sameSignature(a, b)
			if tt.want == "" {
				if err != nil {
					t.Errorf("sameSignature: %v, want compatible", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("sameSignature: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReloadWithChangedSignatureRefused: a file replaced in place by one
// with other inputs is refused; the running instance keeps serving.
func TestReloadWithChangedSignatureRefused(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	l.set("v1b", 2, nil)
	l.inputs["v1b"] = []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 8}}}
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "v1", "a"))})
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "v1b", "b"))})
	req := request("", 1, 0)
	resp, err := s.Infer(ctx, req)
	if err != nil || deltaOf(t, req, resp) != 1 {
		t.Fatalf("after a refused reload: %+v, %v; want the old instance's answer", resp, err)
	}
	idx := s.Index()
	if len(idx) != 1 || idx[0].State != StateReady || !strings.Contains(idx[0].Reason, `input "INPUT" changed incompatibly`) {
		t.Errorf("index %+v, want READY with the signature change as reason", idx)
	}
	if n := l.live.Load(); n != 1 {
		t.Errorf("%d sessions open, want 1: the refused one must be closed", n)
	}
}

// TestFailedReloadKeepsServing: a replacement that fails to load or warm
// up leaves the running instance serving, and is not retried until the
// file changes again.
func TestFailedReloadKeepsServing(t *testing.T) {
	for _, how := range []string{"load", "warmup"} {
		t.Run(how, func(t *testing.T) {
			l := newFakeLoader()
			l.set("good", 1, nil)
			l.set("bad", 2, nil)
			if how == "load" {
				l.fail["bad"] = errors.New("corrupt model file")
			} else {
				l.runErr["bad"] = errors.New("kernel failed")
			}
			cfg := batchingConfig()
			cfg.Warmup.BatchSizes = []int{1}
			s := newTestServer(t, l, Config{})
			ctx := context.Background()
			s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "good", "a"))})
			loads := l.loads.Load()
			for range 2 {
				s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "bad", "b"))})
			}
			req := request("", 2, 3)
			resp, err := s.Infer(ctx, req)
			if err != nil || deltaOf(t, req, resp) != 1 {
				t.Fatalf("after a failed reload: %+v, %v; want the old instance's answer", resp, err)
			}
			idx := s.Index()
			if len(idx) != 1 || idx[0].State != StateReady || !strings.HasPrefix(idx[0].Reason, "reload failed, previous instance still serving: ") {
				t.Errorf("index %+v", idx)
			}
			if how == "warmup" && l.loads.Load() != loads+1 {
				t.Errorf("%d loads of the same failed bytes, want 1", l.loads.Load()-loads)
			}
			if n := l.live.Load(); n != 1 {
				t.Errorf("%d sessions open, want 1", n)
			}
		})
	}
}

// TestDrainTimeout: a replaced version whose request never finishes is
// closed after the drain timeout; the request is answered with an error
// and its session freed.
func TestDrainTimeout(t *testing.T) {
	l := newFakeLoader()
	l.set("stuck", 1, nil)
	l.set("next", 2, nil)
	l.block["stuck"] = make(chan struct{}) // never closed: only ctx ends its runs
	s := newTestServer(t, l, Config{DrainTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "stuck", "a"))})
	answered := make(chan error, 1)
	go func() {
		_, err := s.Infer(ctx, request("", 1, 0))
		answered <- err
	}()
	eventually(t, func() bool { return s.Index()[0].State == StateReady && inflight(s) == 1 })
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "next", "b"))})
	select {
	case err := <-answered:
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Errorf("request cut off by the drain timeout: %v, want the stopped run's error", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the stuck request was never answered")
	}
	eventually(t, func() bool { return l.live.Load() == 1 })
	req := request("", 1, 0)
	if resp, err := s.Infer(ctx, req); err != nil || deltaOf(t, req, resp) != 2 {
		t.Errorf("the replacement: %+v, %v", resp, err)
	}
}

func inflight(s *Server) int {
	m, _ := s.model("m")
	n := 0
	for _, v := range m.serving.Load().byNumber {
		n += v.batch.Inflight()
	}
	return n
}

// TestCloseTimeout: Close gives up while a request runs on, says sessions
// are still open, and leaves no shadow worker behind; a second Close waits
// for the rest.
func TestCloseTimeout(t *testing.T) {
	l := newFakeLoader()
	l.set("a", 1, nil)
	block := make(chan struct{})
	l.block["a"] = block
	s := New(l, Config{DrainTimeout: testTimeout}, zap.NewNop(), nil, nil)
	ctx := context.Background()
	cfg := withSplit(batchingConfig(), map[string]int{"1": 1}, &repository.Shadow{Version: 2, Percent: 100})
	l.set("b", 2, nil)
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "b", "x"))})
	answered := make(chan error, 1)
	go func() {
		_, err := s.Infer(ctx, request("", 1, 0))
		answered <- err
	}()
	eventually(t, func() bool { return inflight(s) == 1 })

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err := s.Close(short)
	if !errors.Is(err, ErrSessionsOpen) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a request running: %v, want ErrSessionsOpen", err)
	}
	if n := l.live.Load(); n == 0 {
		t.Error("every session closed although Close reported some open")
	}
	if stacks := goroutines(); strings.Contains(stacks, "(*shadowQueue).work") {
		t.Errorf("a shadow worker outlived Close:\n%s", stacks)
	}

	close(block)
	if err := <-answered; err != nil {
		t.Errorf("the running request: %v", err)
	}
	long, cancel2 := context.WithTimeout(ctx, testTimeout)
	defer cancel2()
	if err := s.Close(long); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := l.live.Load(); n != 0 {
		t.Errorf("%d sessions open after Close returned nil", n)
	}
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestRejectionMessage: a request the model fails on alone, while the
// version answers others, is the client's fault, and the message names
// the model and version.
func TestRejectionMessage(t *testing.T) {
	l := newFakeLoader()
	l.set("p", 1, nil)
	cfg := batchingConfig()
	cfg.Warmup.BatchSizes = []int{1}
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "p", "a"))})
	req := request("", 1, 0)
	req.Inputs[0].Data = fp32(1, poison, 3, 4)
	_, err := s.Infer(ctx, req)
	if !errors.Is(err, ErrInvalidRequest) || !errors.Is(err, errPoison) {
		t.Fatalf("poisoned request: %v, want an invalid request wrapping the model's error", err)
	}
	if want := `model "m" version 1: the model rejected this input: ` + errPoison.Error(); err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}
