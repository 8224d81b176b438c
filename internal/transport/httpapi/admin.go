package httpapi

import (
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// statsDuration is the v2 statistics extension's {count, ns} pair.
type statsDuration struct {
	Count int64 `json:"count"`
	NS    int64 `json:"ns"`
}

func toStatsDuration(d serving.Duration) statsDuration {
	return statsDuration{Count: d.Count, NS: int64(d.Total)}
}

// modelStatistics is one version's entry in the statistics response,
// with the field names Triton's clients read.
type modelStatistics struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	LastInference  int64  `json:"last_inference"` // milliseconds since the epoch
	InferenceCount int64  `json:"inference_count"`
	ExecutionCount int64  `json:"execution_count"`
	InferenceStats struct {
		Success      statsDuration `json:"success"`
		Fail         statsDuration `json:"fail"`
		Queue        statsDuration `json:"queue"`
		ComputeInfer statsDuration `json:"compute_infer"`
	} `json:"inference_stats"`
}

// modelStats serves GET /v2/models/{m}[/versions/{v}]/stats.
func (s *Server) modelStats(ctx *fasthttp.RequestCtx, model, version string) {
	st, err := s.models.Statistics(model, version)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	doc := struct {
		ModelStats []modelStatistics `json:"model_stats"`
	}{ModelStats: make([]modelStatistics, len(st))}
	for i, v := range st {
		m := &doc.ModelStats[i]
		m.Name, m.Version = v.Name, v.Version
		if !v.LastInference.IsZero() {
			m.LastInference = v.LastInference.UnixMilli()
		}
		m.InferenceCount, m.ExecutionCount = v.InferenceCount, v.ExecutionCount
		m.InferenceStats.Success = toStatsDuration(v.Success)
		m.InferenceStats.Fail = toStatsDuration(v.Fail)
		m.InferenceStats.Queue = toStatsDuration(v.Queue)
		m.InferenceStats.ComputeInfer = toStatsDuration(v.Compute)
	}
	s.writeDocument(ctx, doc)
}

// trafficArm is one arm of GET /traffic's effective split.
type trafficArm struct {
	Version string  `json:"version"`
	Weight  int     `json:"weight"`
	Ready   bool    `json:"ready"`
	Percent float64 `json:"percent"`
}

// traffic serves GET and PUT /v2/models/{m}/traffic: the split as
// configured plus its effective shares, and its replacement.
func (s *Server) traffic(ctx *fasthttp.RequestCtx, model string) {
	if ctx.IsPut() {
		if err := s.repo.PutTraffic(model, ctx.PostBody()); err != nil {
			s.fail(ctx, err)
			return
		}
	}
	view, err := s.repo.Traffic(model)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	doc := struct {
		Split     map[string]int `json:"split,omitempty"`
		StickyKey string         `json:"sticky_key"`
		Shadow    *struct {
			Version int64 `json:"version"`
			Percent int   `json:"percent"`
			Ready   bool  `json:"ready"`
		} `json:"shadow,omitempty"`
		Effective []trafficArm `json:"effective"`
	}{Split: view.Traffic.Split, StickyKey: view.Traffic.StickyKey, Effective: []trafficArm{}}
	if view.Shadow != nil {
		n, _ := strconv.ParseInt(view.Shadow.Version, 10, 64)
		doc.Shadow = &struct {
			Version int64 `json:"version"`
			Percent int   `json:"percent"`
			Ready   bool  `json:"ready"`
		}{n, view.Shadow.Percent, view.Shadow.Ready}
	}
	for _, a := range view.Arms {
		doc.Effective = append(doc.Effective, trafficArm(a))
	}
	s.writeDocument(ctx, doc)
	ctx.SetStatusCode(http.StatusOK)
}
