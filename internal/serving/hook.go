package serving

import (
	"path/filepath"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// VersionInfo is what a VersionHook learns of a version being loaded.
type VersionInfo struct {
	// Model and Version are the canonical labels.
	Model, Version string
	// Dir is the version folder (where its model file lies).
	Dir string
	// Config is the model's config.
	Config repository.Config
	// Inputs and Outputs are the model's declared inputs and outputs.
	Inputs, Outputs []tensor.Spec
}

// Validator checks a request's inputs on the request path, after they were
// checked against the model and put in declared order, before the request
// is queued. It must be safe for concurrent use, must not keep in, and
// should be cheap: every request pays for it. An error rejects the request
// and must wrap ErrInvalidRequest.
type Validator interface {
	Validate(in []tensor.Tensor) error
}

// VersionHook prepares per-version state kept outside this package (data
// validation, for one) while a version loads, after its session loaded and
// before it is published. An error makes the load fail: the version is
// UNAVAILABLE with the error as its reason, like a config error (a
// version already serving keeps serving). The returned Validator, nil for
// none, checks every request the version answers.
type VersionHook interface {
	Prepare(v VersionInfo) (Validator, error)
}

// SetVersionHook sets the server's version hook. cmd/serve calls it once,
// before the first Apply; it is not safe concurrently with loads.
func (s *Server) SetVersionHook(h VersionHook) { s.hook = h }

// prepare runs the version hook for v, if one is set.
func (s *Server) prepare(name string, v *version, dv DesiredVersion, cfg repository.Config) error {
	if s.hook == nil {
		return nil
	}
	val, err := s.hook.Prepare(VersionInfo{Model: name, Version: v.label, Dir: filepath.Dir(dv.Path),
		Config: cfg, Inputs: v.inputs, Outputs: v.outputs})
	if err != nil {
		return err
	}
	v.validator = val
	return nil
}
