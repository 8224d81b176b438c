package grpcapi

import (
	"context"
	"time"

	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Quality is the model-quality loop as the gRPC front end uses it;
// *quality.Monitor implements it. Safe for concurrent use; errors wrap the
// serving and tensor sentinels.
type Quality interface {
	Feedback(model string, items []quality.Item) ([]quality.Result, error)
	Report(model, version string, window time.Duration) (quality.Report, error)
}

var _ Quality = (*quality.Monitor)(nil)

// qualityService is onnxserve.v1.ModelQuality: the same semantics as the
// HTTP feedback and quality endpoints.
type qualityService struct {
	inference.UnimplementedModelQualityServer
	q Quality
}

func (s *qualityService) Feedback(_ context.Context, req *inference.FeedbackRequest) (*inference.FeedbackResponse, error) {
	if len(req.GetFeedback()) > quality.MaxFeedbackItems {
		return nil, transport.GRPCError(quality.ErrTooManyItems)
	}
	items := make([]quality.Item, len(req.GetFeedback()))
	for i, f := range req.GetFeedback() {
		items[i] = quality.Item{ID: f.GetId(), Version: f.GetModelVersion(), Truth: values(f.GetGroundTruth())}
		if len(f.GetPrediction()) > 0 {
			items[i].Prediction = values(f.GetPrediction())
		}
	}
	res, err := s.q.Feedback(req.GetModelName(), items)
	if err != nil {
		return nil, transport.GRPCError(err)
	}
	out := &inference.FeedbackResponse{Results: make([]*inference.FeedbackResult, len(res))}
	for i, r := range res {
		out.Results[i] = &inference.FeedbackResult{Id: r.ID, Result: r.Result, Versions: r.Versions, Reason: r.Reason}
	}
	return out, nil
}

func values(vs []*inference.Value) []quality.Value {
	out := make([]quality.Value, len(vs))
	for i, v := range vs {
		switch k := v.GetKind().(type) {
		case *inference.Value_Label:
			out[i] = quality.Value{Str: k.Label, IsStr: true}
		case *inference.Value_Number:
			out[i] = quality.Value{Num: k.Number}
		default:
			// An empty Value is neither a number nor a label: a label no
			// class has, so the item comes back invalid with the reason.
			out[i] = quality.Value{IsStr: true}
		}
	}
	return out
}

func (s *qualityService) Quality(_ context.Context, req *inference.QualityRequest) (*inference.QualityResponse, error) {
	var window time.Duration
	if w := req.GetWindow(); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 {
			return nil, transport.GRPCError(tensor.Invalidf("window: want a positive duration such as 15m or 24h, got %q", w))
		}
		window = d
	}
	rep, err := s.q.Report(req.GetModelName(), req.GetModelVersion(), window)
	if err != nil {
		return nil, transport.GRPCError(err)
	}
	out := &inference.QualityResponse{ModelName: rep.Model, Task: rep.Task, Window: rep.Window}
	for _, v := range rep.Versions {
		vq := &inference.VersionQuality{Version: v.Version, Labelled: int64(v.Labelled),
			Accuracy: v.Accuracy, MacroF1: v.MacroF1, RocAuc: v.ROCAUC, Mae: v.MAE, Rmse: v.RMSE}
		for _, c := range v.Classes {
			vq.Classes = append(vq.Classes, &inference.ClassQuality{Class: c.Class, Index: int32(c.Index),
				Precision: c.Precision, Recall: c.Recall, F1: c.F1, Support: int64(c.Support), Predicted: int64(c.Predicted)})
		}
		if v.Confusion != nil {
			vq.ConfusionLabels = v.Confusion.Labels
			for _, row := range v.Confusion.Rows {
				r := &inference.ConfusionRow{Counts: make([]int64, len(row))}
				for j, n := range row {
					r.Counts[j] = int64(n)
				}
				vq.ConfusionRows = append(vq.ConfusionRows, r)
			}
		}
		out.Versions = append(out.Versions, vq)
	}
	return out, nil
}
