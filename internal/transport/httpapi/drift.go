package httpapi

import (
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/onnxserve/onnxserve/internal/drift"
)

// DriftReporter computes the drift reports of a model's monitored
// versions (version "" for all of them); drift.Hub implements it. It must
// be safe for concurrent use.
type DriftReporter interface {
	Reports(model, version string) ([]drift.Report, error)
}

// modelDrift serves GET /v2/models/{m}[/versions/{v}]/drift.
func (s *Server) modelDrift(ctx *fasthttp.RequestCtx, model, version string) {
	if s.cfg.Drift == nil {
		s.fail(ctx, fmt.Errorf("model %q: %w", model, drift.ErrNoReport))
		return
	}
	reps, err := s.cfg.Drift.Reports(model, version)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.writeDocument(ctx, struct {
		ModelDrift []drift.Report `json:"model_drift"`
	}{reps})
}
