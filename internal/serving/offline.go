package serving

import (
	"context"
	"fmt"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"go.uber.org/zap"
)

// Session is one model version loaded the way the server loads it (the
// Loader with the config's instances settings, the batch-dimension check,
// the configured warmup) and run directly: no queue, no batcher, no
// routing, no metrics. It is the way in for the offline commands, which
// must compute exactly what would serve. Safe for concurrent use.
type Session struct {
	v   *version
	cfg repository.Config
}

// Open loads version v of a scanned model with cfg (normally the model's
// own config; a caller may change its instances block, as `score` does to
// use every CPU). A model whose config.yaml failed to parse, or a version
// that cannot be loaded, is an error that names it.
func Open(ctx context.Context, l Loader, m repository.Model, v repository.Version, cfg repository.Config) (*Session, error) {
	if m.Err != nil {
		return nil, fmt.Errorf("model %q: config.yaml: %w", m.Name, m.Err)
	}
	if v.Err != nil {
		return nil, fmt.Errorf("model %q version %d: %w", m.Name, v.Number, v.Err)
	}
	ver, err := openVersion(ctx, l, DesiredVersion{Number: v.Number, Path: v.Path}, "", &cfg, nil, zap.NewNop())
	if err != nil {
		return nil, fmt.Errorf("model %q version %d: %w", m.Name, v.Number, err)
	}
	return &Session{v: ver, cfg: cfg}, nil
}

// Inputs are the model's declared inputs, in order.
func (s *Session) Inputs() []tensor.Spec { return s.v.inputs }

// Outputs are the model's declared outputs, in order.
func (s *Session) Outputs() []tensor.Spec { return s.v.outputs }

// Batching reports whether the model's first dimension is a batch
// dimension (max_batch_size > 0), so rows may be stacked into one run.
func (s *Session) Batching() bool { return s.cfg.MaxBatchSize > 0 }

// Run checks in against the declared inputs exactly as the server checks
// a request (names, datatypes, shapes, in any order) and runs it; the
// outputs come back in declared order. Each input must be a valid tensor
// (tensor.Validate). No max_batch_size applies: the caller picks its batch.
func (s *Session) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	arranged, err := s.v.arrange(in)
	if err != nil {
		return nil, err
	}
	return s.v.sess.Run(ctx, arranged)
}

// Close frees the session.
func (s *Session) Close() error { return s.v.sess.Close() }
