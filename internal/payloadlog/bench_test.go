package payloadlog

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// BenchmarkKeep is the payload log's cost on the request path: a request
// of a model without payload_log, one not drawn, and one sampled (the copy
// of its two [1,16] INT32 inputs and outputs).
func BenchmarkKeep(b *testing.B) {
	l, err := New(Config{}, nil, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	l.SetPolicy("never", &Policy{Sample: 1e-12, Mode: ModeAll})
	l.SetPolicy("always", &Policy{Sample: 1, Mode: ModeAll})
	req := simpleRequest(1, 1)
	for _, model := range []string{"unconfigured", "never", "always"} {
		rec := &serving.Record{Model: model, Version: "1", ID: "x", Inputs: req.Inputs, Outputs: req.Inputs}
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.Keep(rec)
			}
		})
	}
}
