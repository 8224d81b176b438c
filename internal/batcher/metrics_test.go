package batcher

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

var metricNames = []string{
	"onnxserve_queue_duration_seconds",
	"onnxserve_compute_duration_seconds",
	"onnxserve_batch_size",
	"onnxserve_queue_depth",
	"onnxserve_inflight_requests",
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg, []float64{0.001, 0.01})
		if err != nil {
			t.Fatal(err)
		}
		started, release := make(chan struct{}, 10), make(chan struct{})
		cfg := Config{MaxBatchSize: 4, Batching: true, MaxQueueSize: 8, Model: "m", Version: "1"}
		b, err := New(newRecorder(blocking(started, release, false)), cfg, nil, m)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		replies := []<-chan reply{submitAsync(ctx, b, ids("x", 1, 1, 2, 3))}
		<-started
		replies = append(replies, submitAsync(ctx, b, ids("x", 1, 4)), submitAsync(ctx, b, ids("x", 1, 5)))
		synctest.Wait()

		const gauges = `
# HELP onnxserve_inflight_requests Requests admitted by the batcher and not yet answered.
# TYPE onnxserve_inflight_requests gauge
onnxserve_inflight_requests{model="m",version="1"} 3
# HELP onnxserve_queue_depth Requests waiting in the batcher now.
# TYPE onnxserve_queue_depth gauge
onnxserve_queue_depth{model="m",version="1"} 2
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(gauges), "onnxserve_queue_depth", "onnxserve_inflight_requests"); err != nil {
			t.Error(err)
		}

		// Fake time: the first batch computes for 5ms, the two queued
		// requests wait 5ms.
		time.Sleep(5 * time.Millisecond)
		close(release)
		for _, ch := range replies {
			if r := await(t, ch); r.err != nil {
				t.Fatal(r.err)
			}
		}
		synctest.Wait()

		const histograms = `
# HELP onnxserve_batch_size Rows per executed batch.
# TYPE onnxserve_batch_size histogram
onnxserve_batch_size_bucket{model="m",version="1",le="1"} 0
onnxserve_batch_size_bucket{model="m",version="1",le="2"} 1
onnxserve_batch_size_bucket{model="m",version="1",le="4"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="8"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="16"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="32"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="64"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="128"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="256"} 2
onnxserve_batch_size_bucket{model="m",version="1",le="+Inf"} 2
onnxserve_batch_size_sum{model="m",version="1"} 5
onnxserve_batch_size_count{model="m",version="1"} 2
# HELP onnxserve_compute_duration_seconds Time one batch spent in the model runner.
# TYPE onnxserve_compute_duration_seconds histogram
onnxserve_compute_duration_seconds_bucket{model="m",version="1",le="0.001"} 1
onnxserve_compute_duration_seconds_bucket{model="m",version="1",le="0.01"} 2
onnxserve_compute_duration_seconds_bucket{model="m",version="1",le="+Inf"} 2
onnxserve_compute_duration_seconds_sum{model="m",version="1"} 0.005
onnxserve_compute_duration_seconds_count{model="m",version="1"} 2
# HELP onnxserve_inflight_requests Requests admitted by the batcher and not yet answered.
# TYPE onnxserve_inflight_requests gauge
onnxserve_inflight_requests{model="m",version="1"} 0
# HELP onnxserve_queue_depth Requests waiting in the batcher now.
# TYPE onnxserve_queue_depth gauge
onnxserve_queue_depth{model="m",version="1"} 0
# HELP onnxserve_queue_duration_seconds Time a request waited in the batcher before its batch started.
# TYPE onnxserve_queue_duration_seconds histogram
onnxserve_queue_duration_seconds_bucket{model="m",version="1",le="0.001"} 1
onnxserve_queue_duration_seconds_bucket{model="m",version="1",le="0.01"} 3
onnxserve_queue_duration_seconds_bucket{model="m",version="1",le="+Inf"} 3
onnxserve_queue_duration_seconds_sum{model="m",version="1"} 0.01
onnxserve_queue_duration_seconds_count{model="m",version="1"} 3
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(histograms), metricNames...); err != nil {
			t.Error(err)
		}

		mustClose(t, b)
		if n, err := testutil.GatherAndCount(reg, metricNames...); err != nil || n != 0 {
			t.Errorf("%d series left after Close (err %v), want none", n, err)
		}
	})
}

// TestMetricsSharedVersion covers a version reloaded in place: two open
// batchers with the same labels report one series, and closing the old one
// keeps it.
func TestMetricsSharedVersion(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MaxBatchSize: 4, Model: "m", Version: "2"}
	var bs [2]*Batcher
	for i := range bs {
		if bs[i], err = New(runnerFunc(addOne), cfg, nil, m); err != nil {
			t.Fatal(err)
		}
		if _, err := bs[i].Submit(context.Background(), []tensor.Tensor{ids("x", 1, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP onnxserve_batch_size Rows per executed batch.
# TYPE onnxserve_batch_size histogram
onnxserve_batch_size_bucket{model="m",version="2",le="1"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="2"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="4"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="8"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="16"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="32"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="64"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="128"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="256"} 2
onnxserve_batch_size_bucket{model="m",version="2",le="+Inf"} 2
onnxserve_batch_size_sum{model="m",version="2"} 2
onnxserve_batch_size_count{model="m",version="2"} 2
`), "onnxserve_batch_size"); err != nil {
		t.Error(err)
	}

	mustClose(t, bs[0])
	for _, name := range metricNames {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series while the new batcher is open (err %v), want 1", name, n, err)
		}
	}
	mustClose(t, bs[1])
	if n, err := testutil.GatherAndCount(reg, metricNames...); err != nil || n != 0 {
		t.Errorf("%d series left after both closed (err %v), want none", n, err)
	}
}

func TestNewMetricsRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg, nil); err == nil {
		t.Error("registering the batcher metrics twice on one registry succeeded")
	}
}
