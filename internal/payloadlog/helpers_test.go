package payloadlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 30 * time.Second

// fakeLoader loads servingtest.Simple for every path.
type fakeLoader struct{}

func (fakeLoader) Load(context.Context, string, repository.Instances) (serving.Model, error) {
	return servingtest.Simple(), nil
}

// newSimpleServer serves the fake "simple" model (INT32 [-1,16] inputs
// INPUT0, INPUT1) as version 1, with l as its tap.
func newSimpleServer(t *testing.T, l *Logger) *serving.Server {
	t.Helper()
	s := serving.New(fakeLoader{}, serving.Config{}, zap.NewNop(), nil, nil)
	if l != nil {
		if err := serving.AddTap(s, "payloadlog", 1<<15, serving.Tap[*Entry](l)); err != nil {
			t.Fatal(err)
		}
	}
	s.Apply(context.Background(), []serving.Desired{{Name: "simple", Versions: []serving.DesiredVersion{{Number: 1, Path: "m", Fingerprint: "a"}}}})
	if ok, err := s.ModelReady("simple", ""); !ok {
		t.Fatalf("fake model not ready: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("serving close: %v", err)
		}
	})
	return s
}

// int32s encodes vs as INT32 data.
func int32s(vs ...int32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}

// simpleRequest is request i: INPUT0 = i..i+15 per row, INPUT1 = 1.
func simpleRequest(i, rows int) *serving.Request {
	a, b := make([]int32, 16*rows), make([]int32, 16*rows)
	for j := range a {
		a[j], b[j] = int32(i+j), 1
	}
	shape := []int64{int64(rows), 16}
	return &serving.Request{Model: "simple", ID: fmt.Sprintf("req-%d", i), Protocol: "http",
		Inputs: []tensor.Tensor{
			{Name: "INPUT0", DataType: tensor.Int32, Shape: shape, Data: int32s(a...)},
			{Name: "INPUT1", DataType: tensor.Int32, Shape: shape, Data: int32s(b...)},
		}}
}

// receiver is a CloudEvents HTTP receiver built with the SDK: it answers
// every event with status and records it.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []event.Event
	got    chan struct{}
	status int
	hang   chan struct{} // when set, each delivery waits for it
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan struct{}, 1<<16), status: status}
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, func(ctx context.Context, ev event.Event) protocol.Result {
		if r.hang != nil {
			select {
			case <-r.hang:
			case <-ctx.Done():
			}
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		r.got <- struct{}{}
		if r.status != 200 {
			return cehttp.NewResult(r.status, "refused by the test")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	return r
}

// wait waits for n events.
func (r *receiver) wait(t *testing.T, n int) []event.Event {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		r.mu.Lock()
		have := len(r.events)
		r.mu.Unlock()
		if have >= n {
			break
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("receiver got %d events, want %d", have, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

// counterValue reads one sink's counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "sink" && lp.GetValue() == sink {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
