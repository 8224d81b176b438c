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
	// BatchSizes is an extension: the measurement that chose an auto
	// version's batch size.
	BatchSizes *batchSizes `json:"batch_sizes,omitempty"`
}

// batchSizes is serving.BatchMeasurement as the statistics document shows it.
type batchSizes struct {
	Chosen  int               `json:"chosen"`
	TookNS  int64             `json:"took_ns"`
	Timings []batchSizeTiming `json:"timings"`
}

// batchSizeTiming is one measured batch size; runs 0 = not reached.
type batchSizeTiming struct {
	BatchSize      int     `json:"batch_size"`
	Runs           int     `json:"runs"`
	NSPerRun       int64   `json:"ns_per_run"`
	ItemsPerSecond float64 `json:"items_per_second"`
}

func toBatchSizes(m *serving.BatchMeasurement) *batchSizes {
	if m == nil {
		return nil
	}
	out := &batchSizes{Chosen: m.Best, TookNS: int64(m.Took), Timings: make([]batchSizeTiming, len(m.Timings))}
	for i, t := range m.Timings {
		out.Timings[i] = batchSizeTiming{BatchSize: t.Size, Runs: t.Runs, NSPerRun: int64(t.PerRun), ItemsPerSecond: t.ItemsPerSecond}
	}
	return out
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
		m.BatchSizes = toBatchSizes(v.BatchSizes)
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
