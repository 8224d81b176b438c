package payloadlog

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// v2Body is what a test reads back from an event body.
type v2Body struct {
	ID           string `json:"id"`
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	Inputs       []struct {
		Name string  `json:"name"`
		Data []int32 `json:"data"`
	} `json:"inputs"`
	Outputs []struct {
		Name string  `json:"name"`
		Data []int32 `json:"data"`
	} `json:"outputs"`
}

func newHTTPLogger(t *testing.T, url string, reg prometheus.Registerer, queue int, cfg HTTPConfig) *Logger {
	t.Helper()
	cfg.URL = url
	sink, err := NewHTTPSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Source: "http://test/", Namespace: "ns1", QueueSize: queue}, map[string]Sink{"http": sink}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func closeLogger(t *testing.T, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Errorf("logger close: %v", err)
	}
}

// TestCloudEventsAsKServeSendsThem: with sample 1, every inference gives
// exactly one request and one response event, in binary mode with KServe's
// attributes, bodies v2 JSON with the request id and the version; a
// redacted input is absent.
func TestCloudEventsAsKServeSendsThem(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	var binaryMode atomic.Bool
	inner := rcv.srv.Config.Handler
	rcv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Binary content mode: attributes in ce- headers, the body alone.
		binaryMode.Store(r.Header.Get("Ce-Id") != "" && r.Header.Get("Content-Type") == ContentType)
		inner.ServeHTTP(w, r)
	})
	l := newHTTPLogger(t, rcv.srv.URL, prometheus.NewRegistry(), 0, HTTPConfig{})
	l.SetPolicy("simple", &Policy{Sample: 1, Mode: ModeAll, Redact: []string{"INPUT1"}})
	s := newSimpleServer(t, l)
	const n = 20
	for i := range n {
		if _, err := s.Infer(context.Background(), simpleRequest(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	evs := rcv.wait(t, 2*n)
	closeLogger(t, l)
	if !binaryMode.Load() {
		t.Error("events not sent in binary content mode")
	}
	if got := len(rcv.wait(t, 0)); got != 2*n {
		t.Fatalf("%d events, want exactly %d", got, 2*n)
	}
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.Type()+" "+ev.ID()]++
		checkAttributes(t, ev, "simple", "ns1")
		var b v2Body
		if err := json.Unmarshal(ev.Data(), &b); err != nil {
			t.Fatalf("body of %s is not JSON: %v", ev.ID(), err)
		}
		if b.ID != ev.ID() {
			t.Errorf("body id %q, event id %q", b.ID, ev.ID())
		}
		switch ev.Type() {
		case TypeRequest:
			if len(b.Inputs) != 1 || b.Inputs[0].Name != "INPUT0" {
				t.Errorf("request inputs %+v, want INPUT0 alone (INPUT1 redacted)", b.Inputs)
			}
		case TypeResponse:
			if b.ModelName != "simple" || b.ModelVersion != "1" || len(b.Outputs) != 2 {
				t.Errorf("response %+v, want simple v1 with two outputs", b)
			}
		default:
			t.Errorf("event type %q", ev.Type())
		}
	}
	for i := range n {
		id := simpleRequest(i, 1).ID
		if seen[TypeRequest+" "+id] != 1 || seen[TypeResponse+" "+id] != 1 {
			t.Errorf("request %s: %d request and %d response events, want 1 and 1", id, seen[TypeRequest+" "+id], seen[TypeResponse+" "+id])
		}
	}
}

// checkAttributes checks the CloudEvents attributes KServe's logger sends.
func checkAttributes(t *testing.T, ev event.Event, model, namespace string) {
	t.Helper()
	ext := ev.Extensions()
	if ev.SpecVersion() != "1.0" || ev.Source() == "" || ev.ID() == "" || ev.Time().IsZero() {
		t.Errorf("event %s: specversion %q source %q time %v", ev.ID(), ev.SpecVersion(), ev.Source(), ev.Time())
	}
	for k, want := range map[string]string{AttrInferenceService: model, AttrNamespace: namespace, AttrComponent: "predictor", AttrEndpoint: "default", AttrModelVersion: "1"} {
		if got, _ := ext[k].(string); got != want {
			t.Errorf("event %s: extension %s = %v, want %q", ev.ID(), k, ext[k], want)
		}
	}
	if _, ok := ext[AttrRecordedTime]; !ok {
		t.Errorf("event %s: no %s extension", ev.ID(), AttrRecordedTime)
	}
}

// countingSink counts events; it never fails.
type countingSink struct {
	mu  sync.Mutex
	ids map[string]int
}

func (c *countingSink) Write(_ context.Context, ev *event.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids[ev.Type()+" "+ev.ID()]++
	return nil
}

func (c *countingSink) Close() error { return nil }

// TestSampleShare: sample 0.1 over 10,000 requests logs a share within a
// binomial bound: 5 standard deviations (30 requests) around 1,000, which
// a fair draw leaves less than once in a million runs.
func TestSampleShare(t *testing.T) {
	sink := &countingSink{ids: map[string]int{}}
	reg := prometheus.NewRegistry()
	l, err := New(Config{QueueSize: 1 << 15}, map[string]Sink{"count": sink}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	l.SetPolicy("simple", &Policy{Sample: 0.1, Mode: ModeRequest})
	s := newSimpleServer(t, l)
	const n, p = 10000, 0.1
	for i := range n {
		if _, err := s.Infer(context.Background(), simpleRequest(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closeLogger(t, l)
	got := len(sink.ids)
	for k, c := range sink.ids {
		if c != 1 {
			t.Errorf("%s logged %d times", k, c)
		}
	}
	mean, sd := n*p, math.Sqrt(n*p*(1-p))
	if math.Abs(float64(got)-mean) > 5*sd {
		t.Errorf("%d of %d requests logged at sample %v; want %v ± %.0f", got, n, p, mean, 5*sd)
	}
	if d := counterValue(t, reg, "onnxserve_payload_log_dropped_total", "count"); d != 0 {
		t.Errorf("%v events dropped", d)
	}
	if e := counterValue(t, reg, "onnxserve_payload_log_events_total", "count"); int(e) != got {
		t.Errorf("events_total %v, sink saw %d", e, got)
	}
}

// TestModes: request and response modes log one event type; a model
// without a policy, or with sample 0, logs nothing; shadow records never.
func TestModes(t *testing.T) {
	for _, tt := range []struct {
		mode Mode
		want string
	}{{ModeRequest, TypeRequest}, {ModeResponse, TypeResponse}} {
		sink := &countingSink{ids: map[string]int{}}
		l, err := New(Config{}, map[string]Sink{"count": sink}, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		l.SetPolicy("simple", &Policy{Sample: 1, Mode: tt.mode})
		l.SetPolicy("other", &Policy{Sample: 0})
		r := simpleRequest(1, 1)
		for _, rec := range []serving.Record{
			{Model: "simple", Version: "1", ID: "a", Inputs: r.Inputs},
			{Model: "simple", Version: "2", ID: "shadow", Arm: serving.ArmShadow, Inputs: r.Inputs},
			{Model: "other", Version: "1", ID: "b", Inputs: r.Inputs},
			{Model: "unknown", Version: "1", ID: "c", Inputs: r.Inputs},
		} {
			if e, ok := l.Keep(&rec); ok {
				l.Consume(e)
			}
		}
		closeLogger(t, l)
		if !slices.Equal(keys(sink.ids), []string{tt.want + " a"}) {
			t.Errorf("mode %v: events %v, want only %s of a", tt.mode, sink.ids, tt.want)
		}
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// latencies runs n requests one after another and returns their sorted
// durations.
func latencies(t *testing.T, s *serving.Server, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if _, err := s.Infer(context.Background(), simpleRequest(i, 1)); err != nil {
			t.Fatal(err)
		}
		out[i] = time.Since(start)
	}
	slices.Sort(out)
	return out
}

func p99(d []time.Duration) time.Duration { return d[len(d)*99/100] }

// TestFailingReceiverNeverSlowsInference: a receiver that is down, answers
// 500, or hangs loses events, counted as dropped and errors, while the
// inference latency stays that of a healthy receiver's run: the p99 of the
// same requests is compared, with slack for a shared machine's noise, not
// against a wall-clock bound.
func TestFailingReceiverNeverSlowsInference(t *testing.T) {
	const n = 3000
	fast := HTTPConfig{Timeout: 2 * time.Second, Retries: 2, Backoff: time.Millisecond}
	measure := func(t *testing.T, url string, reg *prometheus.Registry) []time.Duration {
		l := newHTTPLogger(t, url, reg, 64, fast)
		l.SetPolicy("simple", &Policy{Sample: 1, Mode: ModeAll})
		s := newSimpleServer(t, l)
		d := latencies(t, s, n)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// A short deadline: what a hanging receiver still holds is dropped.
		short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancelShort()
		_ = l.Close(short)
		return d
	}
	healthy := newReceiver(t, http.StatusOK)
	base := p99(measure(t, healthy.srv.URL, prometheus.NewRegistry()))

	down := newReceiver(t, http.StatusOK)
	downURL := down.srv.URL
	down.srv.Close()
	failing := newReceiver(t, http.StatusInternalServerError)
	hanging := newReceiver(t, http.StatusOK)
	hanging.hang = make(chan struct{})
	defer close(hanging.hang)
	for _, tt := range []struct{ name, url string }{
		{"down", downURL}, {"500", failing.srv.URL}, {"hanging", hanging.srv.URL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			got := p99(measure(t, tt.url, reg))
			dropped := counterValue(t, reg, "onnxserve_payload_log_dropped_total", "http")
			if dropped == 0 {
				t.Error("no event counted as dropped")
			}
			if tt.name != "hanging" && counterValue(t, reg, "onnxserve_payload_log_errors_total", "http") == 0 {
				t.Error("no delivery error counted")
			}
			// 3x the healthy p99 plus 2ms: a sink on the request path
			// (a connection attempt, a 500 round trip, a hang) would cost
			// far more than either.
			if limit := 3*base + 2*time.Millisecond; got > limit {
				t.Errorf("inference p99 %v with the receiver %s, %v with a healthy one", got, tt.name, base)
			}
			t.Logf("p99 %v (healthy %v), dropped %v", got, base, dropped)
		})
	}
}

// slowSink takes delay per event, or until ctx ends.
type slowSink struct {
	delay time.Duration
	n     atomic.Int64
}

func (s *slowSink) Write(ctx context.Context, _ *event.Event) error {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
		s.n.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowSink) Close() error { return nil }

// TestCloseFlushesWithinDeadline: Close delivers what the sinks hold while
// its deadline allows and counts the rest as dropped, so every event is
// either delivered or counted.
func TestCloseFlushesWithinDeadline(t *testing.T) {
	for _, tt := range []struct {
		name     string
		deadline time.Duration
		all      bool
	}{{"generous deadline", testTimeout, true}, {"short deadline", 20 * time.Millisecond, false}} {
		t.Run(tt.name, func(t *testing.T) {
			const n = 40
			sink := &slowSink{delay: 5 * time.Millisecond}
			reg := prometheus.NewRegistry()
			l, err := New(Config{QueueSize: 2 * n}, map[string]Sink{"slow": sink}, zap.NewNop(), reg)
			if err != nil {
				t.Fatal(err)
			}
			l.SetPolicy("simple", &Policy{Sample: 1, Mode: ModeAll})
			r := simpleRequest(1, 1)
			for i := range n / 2 {
				rec := serving.Record{Model: "simple", Version: "1", ID: strconv.Itoa(i), Inputs: r.Inputs}
				e, ok := l.Keep(&rec)
				if !ok {
					t.Fatal("not sampled at sample 1")
				}
				l.Consume(e)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			_ = l.Close(ctx)
			delivered := counterValue(t, reg, "onnxserve_payload_log_events_total", "slow")
			dropped := counterValue(t, reg, "onnxserve_payload_log_dropped_total", "slow")
			if int(delivered) != int(sink.n.Load()) || delivered+dropped != n {
				t.Errorf("%v delivered (sink saw %d) + %v dropped, want %d in all", delivered, sink.n.Load(), dropped, n)
			}
			if tt.all != (delivered == n) {
				t.Errorf("%v of %d delivered with a %v deadline", delivered, n, tt.deadline)
			}
		})
	}
}
