package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Quality is the model-quality loop as the front end uses it;
// *quality.Monitor implements it. Safe for concurrent use; errors wrap the
// serving and tensor sentinels.
type Quality interface {
	// Feedback joins ground truth to kept predictions of model.
	Feedback(model string, items []quality.Item) ([]quality.Result, error)
	// Report is model's quality over window (0: the configured one), of
	// one version or ("") of every version.
	Report(model, version string, window time.Duration) (quality.Report, error)
}

var _ Quality = (*quality.Monitor)(nil)

// feedbackItem is one item of POST /v2/models/{m}/feedback.
type feedbackItem struct {
	ID           *string         `json:"id"`
	GroundTruth  json.RawMessage `json:"ground_truth"`
	ModelVersion string          `json:"model_version"`
	Prediction   json.RawMessage `json:"prediction"`
}

// feedbackBody is a single item, or a batch under "feedback".
type feedbackBody struct {
	feedbackItem
	Feedback []feedbackItem `json:"feedback"`
}

// feedback serves POST /v2/models/{m}/feedback.
func (s *Server) feedback(ctx *fasthttp.RequestCtx, model string) {
	if s.quality == nil {
		notFound(ctx)
		return
	}
	items, err := decodeFeedback(ctx.PostBody())
	if err != nil {
		s.fail(ctx, err)
		return
	}
	res, err := s.quality.Feedback(model, items)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.writeDocument(ctx, struct {
		Results []quality.Result `json:"results"`
	}{res})
}

// decodeFeedback reads a feedback body. A body that is not JSON, holds an
// unknown field, mixes a single item with a batch, or gives a value of
// the wrong type is malformed (400); a ground truth the model cannot
// score is the loop's business (an invalid item).
func decodeFeedback(body []byte) ([]quality.Item, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var b feedbackBody
	if err := dec.Decode(&b); err != nil {
		return nil, tensor.Invalidf("feedback body: %v", err)
	}
	if dec.More() {
		return nil, tensor.Invalidf("feedback body: more than one JSON value")
	}
	single := b.ID != nil || b.GroundTruth != nil || b.ModelVersion != "" || b.Prediction != nil
	switch {
	case single && b.Feedback != nil:
		return nil, tensor.Invalidf("feedback body: send one item (id, ground_truth) or a batch (feedback), not both")
	case !single && b.Feedback == nil:
		return nil, tensor.Invalidf(`feedback body: want {"id":…,"ground_truth":…} or {"feedback":[…]}`)
	case single:
		b.Feedback = []feedbackItem{b.feedbackItem}
	}
	if len(b.Feedback) > quality.MaxFeedbackItems {
		return nil, quality.ErrTooManyItems
	}
	items := make([]quality.Item, len(b.Feedback))
	for i, f := range b.Feedback {
		if f.ID != nil {
			items[i].ID = *f.ID
		}
		items[i].Version = f.ModelVersion
		var err error
		if items[i].Truth, err = decodeValues(f.GroundTruth); err != nil {
			return nil, tensor.Invalidf("feedback[%d].ground_truth: %v", i, err)
		}
		if f.Prediction != nil {
			if items[i].Prediction, err = decodeValues(f.Prediction); err != nil {
				return nil, tensor.Invalidf("feedback[%d].prediction: %v", i, err)
			}
		}
	}
	return items, nil
}

// decodeValues reads a number, a string, or an array of them (one per
// row); absent is no value.
func decodeValues(raw json.RawMessage) ([]quality.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var elems []json.RawMessage
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, err
		}
	} else {
		elems = []json.RawMessage{raw}
	}
	out := make([]quality.Value, len(elems))
	for i, e := range elems {
		var v any
		if err := json.Unmarshal(e, &v); err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case float64:
			out[i] = quality.Value{Num: x}
		case string:
			out[i] = quality.Value{Str: x, IsStr: true}
		default:
			return nil, errors.New("want a number, a label or an array of them")
		}
	}
	return out, nil
}

// qualityReport serves GET /v2/models/{m}[/versions/{v}]/quality[?window=1h].
func (s *Server) qualityReport(ctx *fasthttp.RequestCtx, model, version string) {
	if s.quality == nil {
		notFound(ctx)
		return
	}
	var window time.Duration
	if w := ctx.QueryArgs().Peek("window"); w != nil {
		d, err := time.ParseDuration(string(w))
		if err != nil || d <= 0 {
			writeError(ctx, http.StatusBadRequest, fmt.Sprintf("window: want a positive duration such as 15m or 24h, got %q", w))
			return
		}
		window = d
	}
	rep, err := s.quality.Report(model, version, window)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.writeDocument(ctx, rep)
}
