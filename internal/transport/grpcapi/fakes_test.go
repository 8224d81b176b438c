package grpcapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// identityModel returns its one input of datatype dt, copied, as OUTPUT0.
func identityModel(dt tensor.DataType) *servingtest.Model {
	return &servingtest.Model{
		In:  []tensor.Spec{{Name: "INPUT0", DataType: dt, Shape: []int64{-1}}},
		Out: []tensor.Spec{{Name: "OUTPUT0", DataType: dt, Shape: []int64{-1}}},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			return []tensor.Tensor{{Name: "OUTPUT0", DataType: dt, Shape: slices.Clone(in[0].Shape), Data: slices.Clone(in[0].Data)}}, nil
		},
	}
}

// gate is a model whose runs block until the test lets them go. Each run
// reports its INPUT0 value on started, then waits for that value's release
// channel (or ctx). It records the values it finished.
type gate struct {
	started chan int32
	stop    chan struct{} // closed at cleanup: every run ends

	mu       sync.Mutex
	releases map[int32]chan struct{}
	ran      []int32
}

func newGate() *gate {
	return &gate{started: make(chan int32, 64), stop: make(chan struct{}), releases: map[int32]chan struct{}{}}
}

func (g *gate) release(v int32) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.releases[v]
	if !ok {
		ch = make(chan struct{})
		g.releases[v] = ch
	}
	return ch
}

// open lets the run of value v finish (now or when it starts).
func (g *gate) open(v int32) { close(g.release(v)) }

func (g *gate) finished() []int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ran)
}

func (g *gate) model() *servingtest.Model {
	spec := func(name string) tensor.Spec {
		return tensor.Spec{Name: name, DataType: tensor.Int32, Shape: []int64{-1}}
	}
	return &servingtest.Model{
		In:  []tensor.Spec{spec("INPUT0")},
		Out: []tensor.Spec{spec("OUTPUT0")},
		RunFunc: func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			v := int32(binary.LittleEndian.Uint32(in[0].Data))
			g.started <- v
			select {
			case <-g.release(v):
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-g.stop:
				return nil, errors.New("gate stopped")
			}
			g.mu.Lock()
			g.ran = append(g.ran, v)
			g.mu.Unlock()
			return []tensor.Tensor{{Name: "OUTPUT0", DataType: tensor.Int32, Shape: []int64{1}, Data: slices.Clone(in[0].Data)}}, nil
		},
	}
}

// errRuntime stands for an ONNX Runtime failure.
var errRuntime = errors.New("onnxruntime: kernel failed")

// failingModel fails every run.
func failingModel() *servingtest.Model {
	m := identityModel(tensor.FP32)
	m.RunFunc = func(context.Context, []tensor.Tensor) ([]tensor.Tensor, error) { return nil, errRuntime }
	return m
}

// fakeLoader builds fake models by the name of their model folder.
type fakeLoader struct {
	models map[string]func() (serving.Model, error)
}

func (l *fakeLoader) Load(_ context.Context, path string, _ repository.Instances) (serving.Model, error) {
	name := filepath.Base(filepath.Dir(filepath.Dir(path)))
	mk, ok := l.models[name]
	if !ok {
		return nil, fmt.Errorf("no fake model %q", name)
	}
	return mk()
}

// identityName is the test model that echoes datatype dt.
func identityName(dt tensor.DataType) string { return "id_" + strings.ToLower(dt.String()) }

// writeRepository lays out one version folder per model with a non-empty
// model.onnx (the fake loader never reads it) and the given config.yaml
// texts.
func writeRepository(t *testing.T, names []string, configs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for _, n := range names {
		dir := filepath.Join(root, n, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("fake"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Always a config.yaml (empty: every default): a folder without
		// one is batched by measurement, which the fakes are not made for.
		if err := os.WriteFile(filepath.Join(root, n, "config.yaml"), []byte(configs[n]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
