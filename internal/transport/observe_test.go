package transport

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestObserverAccessLog(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	o, err := NewObserver(reg, []float64{0.1, 1}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code int
		want zapcore.Level
	}{
		{200, zapcore.DebugLevel},
		{400, zapcore.DebugLevel},
		{413, zapcore.DebugLevel},
		{499, zapcore.DebugLevel},
		{500, zapcore.ErrorLevel},
		{503, zapcore.DebugLevel},
		{504, zapcore.DebugLevel},
	}
	for _, tt := range tests {
		o.Observe(ProtocolHTTP, "m", "1", "id", tt.code, time.Millisecond)
		all := logs.TakeAll()
		if len(all) != 1 || all[0].Level != tt.want {
			t.Errorf("code %d logged %v, want one line at %v", tt.code, all, tt.want)
		}
	}
	if got := testutil.ToFloat64(o.requests.WithLabelValues("m", "1", ProtocolHTTP, "504")); got != 1 {
		t.Errorf("m v1 504 counted %v times, want 1", got)
	}
}
