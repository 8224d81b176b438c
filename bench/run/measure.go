package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Modes: how a point is served and driven.
const (
	modeRaw    = "raw"
	modeNaive  = "naive-grpc"
	modeGRPC   = "onnxserve-grpc"
	modeJSON   = "onnxserve-http-json"
	modeBinary = "onnxserve-http-binary"
	modeGhz    = "ghz-grpc"
	// modeDrift is onnxserve-grpc on a copy of the model with drift
	// monitoring (sample 1.0) and NaN and range validation on.
	modeDrift = "onnxserve-grpc-drift"
	// modeQuality is onnxserve-grpc on a copy of the model with the
	// model-quality loop on (monitoring, sample 1.0), and modeQualityOff
	// the plain model measured right before it in each repetition.
	modeQuality    = "onnxserve-grpc-quality"
	modeQualityOff = "onnxserve-grpc-quality-off"
)

// sample is one measured window.
type sample struct {
	Throughput float64 `json:"throughput"`
	MeanMs     float64 `json:"mean_ms"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	// ErrorSamples holds the commonest error messages.
	ErrorSamples map[string]int64 `json:"error_samples,omitempty"`
	Seconds      float64          `json:"seconds"`
	// ServerCPUPer1k is the server's CPU seconds per 1,000 answered
	// inferences.
	ServerCPUPer1k float64 `json:"server_cpu_s_per_1k"`
	// ServerCores is the server's CPU time over the window's length.
	ServerCores float64 `json:"server_cores"`
	// MeanBatch is rows per executed batch, from onnxserve_batch_size.
	MeanBatch float64 `json:"mean_batch"`
	// Batches is the batch-size distribution.
	Batches []batchShare `json:"batches,omitempty"`
	// ComputeMs is the mean time of one batch in ONNX Runtime, from
	// onnxserve_compute_duration_seconds.
	ComputeMs float64 `json:"compute_ms"`
	// ServerP50Ms and ServerP99Ms are percentiles of the server's own
	// request duration (arrival to response written), from
	// onnxserve_request_duration_seconds; QueueP99Ms is the batcher queue
	// wait's, from onnxserve_queue_duration_seconds. Both are interpolated
	// within the histogram's buckets.
	ServerP50Ms float64 `json:"server_p50_ms"`
	ServerP99Ms float64 `json:"server_p99_ms"`
	QueueP99Ms  float64 `json:"queue_p99_ms"`
	// ClientCores is the load generator's CPU time over the window's
	// length; near 1 it, not the server, was the limit.
	ClientCores float64 `json:"client_cores"`
	// OtherCores is the CPU time of every other process on the machine
	// over the window's length: the noise of a shared machine.
	OtherCores float64 `json:"other_cores"`
	// LateSends counts open-loop requests sent late (see loadgen).
	LateSends int64 `json:"late_sends,omitempty"`
	// Predictions is how much onnxserve_predictions_total of the served
	// model grew over the window: the rows the quality loop counted (0
	// for a model without monitoring). TapDropped is how many answers
	// full tap queues dropped meanwhile, every tap summed, and StoreBytes
	// the prediction store's size at the window's end.
	Predictions float64 `json:"predictions,omitempty"`
	TapDropped  float64 `json:"tap_dropped,omitempty"`
	StoreBytes  float64 `json:"store_bytes,omitempty"`
}

// snapshot is the state read at each end of a window.
type snapshot struct {
	at      time.Time
	server  time.Duration
	client  time.Duration
	machine time.Duration
	hists   map[seriesKey]histogram
	values  map[seriesKey]float64
}

// env is what every measurement needs: the built programs, the running
// server and the suite's settings. It is used by one goroutine.
type env struct {
	cfg    *config
	srv    *server
	client *http.Client
	// retryBudget is what is left of the time the suite may spend
	// measuring windows again that other processes disturbed.
	retryBudget time.Duration
	// retried counts the windows measured again.
	retried int
	// vadData is the streaming row's audio file.
	vadData string
}

// again reports whether a window that other processes disturbed (they
// used more than quietCores) should be measured again, waiting for the
// machine to quieten first; each repeat spends the retry budget, so a
// machine that stays busy cannot stretch the suite without bound.
func (e *env) again(ctx context.Context, s sample) bool {
	if s.OtherCores <= e.cfg.quietCores || e.retryBudget <= 0 || ctx.Err() != nil {
		return false
	}
	logf("other processes used %.2f cores during that window; measuring it again", s.OtherCores)
	start := time.Now()
	e.waitQuiet(ctx)
	e.retryBudget -= time.Since(start) + e.cfg.warmup + e.cfg.duration
	e.retried++
	return true
}

func (e *env) snap(clientPid int, model, version string) (snapshot, error) {
	s := snapshot{at: time.Now()}
	var err error
	if s.server, err = e.srv.cpu(); err != nil {
		return s, err
	}
	if clientPid > 0 {
		if s.client, err = procCPU(clientPid); err != nil {
			return s, err
		}
	}
	if s.machine, err = machineBusy(); err != nil {
		return s, err
	}
	if s.hists, s.values, err = scrape(e.client, e.srv.metrics); err != nil {
		return s, err
	}
	return s, nil
}

// fill computes the server-side figures of smp from the snapshots at the
// window's ends; smp.Requests must be set.
func fill(smp *sample, a, b snapshot, model, version string) {
	secs := b.at.Sub(a.at).Seconds()
	server := (b.server - a.server).Seconds()
	client := (b.client - a.client).Seconds()
	smp.ServerCores = server / secs
	smp.ClientCores = client / secs
	smp.OtherCores = max(0, ((b.machine-a.machine).Seconds()-server-client)/secs)
	if smp.Requests > 0 {
		smp.ServerCPUPer1k = server / float64(smp.Requests) * 1000
	}
	bs := b.hists[seriesKey{famBatchSize, model, version}].sub(a.hists[seriesKey{famBatchSize, model, version}])
	smp.MeanBatch = bs.mean()
	smp.Batches = distribution(bs)
	delta := func(fam string) histogram {
		k := seriesKey{fam, model, version}
		return b.hists[k].sub(a.hists[k])
	}
	smp.ComputeMs = delta(famCompute).mean() * 1000
	rd := delta(famRequest)
	smp.ServerP50Ms = rd.quantile(0.50) * 1000
	smp.ServerP99Ms = rd.quantile(0.99) * 1000
	smp.QueueP99Ms = delta(famQueue).quantile(0.99) * 1000
	pk := seriesKey{famPredictions, model, version}
	smp.Predictions = b.values[pk] - a.values[pk]
	tk := seriesKey{name: famTapDropped}
	smp.TapDropped = b.values[tk] - a.values[tk]
	smp.StoreBytes = b.values[seriesKey{name: famStoreBytes}]
}

// servedModel returns the server-side model name a mode drives.
func servedModel(m *model, mode string) string {
	switch mode {
	case modeNaive:
		return m.naive
	case modeDrift:
		return m.drift
	case modeQuality:
		return m.quality
	}
	return m.name
}

// loadgenResult is the part of bench/loadgen's JSON the suite reads.
type loadgenResult struct {
	Event        string           `json:"event"`
	Requests     int64            `json:"requests"`
	Errors       int64            `json:"errors"`
	ErrorSamples map[string]int64 `json:"error_samples"`
	Seconds      float64          `json:"seconds"`
	Throughput   float64          `json:"throughput"`
	LateSends    int64            `json:"late_sends"`
	LatencyMs    struct {
		Mean, P50, P90, P99 float64
	} `json:"latency_ms"`
	// Sequence0 is the stateful workload's answers for its sequence 0.
	Sequence0 []float32 `json:"sequence0"`
}

// runLoadgen measures one point with bench/loadgen pinned to the client
// CPU. rate > 0 runs it open-loop at that many requests per second with
// conc workers.
func (e *env) runLoadgen(ctx context.Context, m *model, mode string, conc int, rate float64) (sample, error) {
	protocol, addr := "grpc", e.srv.grpc
	switch mode {
	case modeJSON:
		protocol, addr = "http-json", e.srv.http
	case modeBinary:
		protocol, addr = "http-binary", e.srv.http
	}
	served := servedModel(m, mode)
	args := []string{
		"--protocol", protocol, "--addr", addr, "--model", served, "--workload", m.name,
		"--concurrency", strconv.Itoa(conc), "--events",
		"--warmup", e.cfg.warmup.String(), "--duration", e.cfg.duration.String(),
	}
	if rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	smp, _, err := e.loadgenWindow(ctx, args, served, m.version)
	return smp, err
}

// loadgenWindow runs bench/loadgen with args (which must include
// --events) pinned to the client CPU and returns the measured window,
// with the server's figures for model served at version, and loadgen's
// own result.
func (e *env) loadgenWindow(ctx context.Context, args []string, served, version string) (sample, *loadgenResult, error) {
	cmd := pinned(ctx, e.cfg.clientCPU, e.cfg.loadgenBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		return sample{}, nil, fmt.Errorf("start loadgen: %w", err)
	}
	var a, b snapshot
	var res *loadgenResult
	var snapErr error
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var r loadgenResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			snapErr = errors.Join(snapErr, fmt.Errorf("loadgen output %q: %w", sc.Text(), err))
			continue
		}
		switch r.Event {
		case "start":
			a, err = e.snap(cmd.Process.Pid, served, version)
			snapErr = errors.Join(snapErr, err)
		case "end":
			b, err = e.snap(cmd.Process.Pid, served, version)
			snapErr = errors.Join(snapErr, err)
		default:
			res = &r
		}
	}
	if err := cmd.Wait(); err != nil {
		return sample{}, nil, fmt.Errorf("loadgen %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if snapErr != nil {
		return sample{}, nil, snapErr
	}
	if res == nil || a.at.IsZero() || b.at.IsZero() {
		return sample{}, nil, fmt.Errorf("loadgen %s: no result or window events", strings.Join(args, " "))
	}
	smp := sample{
		Throughput: res.Throughput, MeanMs: res.LatencyMs.Mean, P50Ms: res.LatencyMs.P50, P90Ms: res.LatencyMs.P90,
		P99Ms: res.LatencyMs.P99, Requests: res.Requests, Errors: res.Errors, ErrorSamples: res.ErrorSamples,
		Seconds: res.Seconds, LateSends: res.LateSends,
	}
	fill(&smp, a, b, served, version)
	return smp, res, nil
}

// ghzReport is the part of ghz's JSON report the suite reads. Durations are
// in nanoseconds.
type ghzReport struct {
	Count   int64   `json:"count"`
	Total   int64   `json:"total"`
	Average int64   `json:"average"`
	Rps     float64 `json:"rps"`
	Latency []struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"`
	} `json:"latencyDistribution"`
	StatusCodes map[string]int64 `json:"statusCodeDistribution"`
	ErrorDist   map[string]int64 `json:"errorDistribution"`
}

// ghzArgs is ghz's command line for simple over gRPC at conc, minus the
// data file and target.
func (e *env) ghzArgs(conc int) []string {
	return []string{
		"--insecure", "--call", "inference.GRPCInferenceService.ModelInfer",
		"-c", strconv.Itoa(conc), "-z", (e.cfg.warmup + e.cfg.duration).String(),
		"--connections", "1", "--cpus", "1", "--duration-stop", "ignore",
		"--disable-template-functions", "--disable-template-data", "-O", "json",
	}
}

// ghzData writes simple's request as the JSON ghz sends: inputs named in
// the message, data as base64 raw_input_contents.
func ghzData(path string) error {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := func() string {
		b := make([]byte, 64)
		for i := range 16 {
			v := uint32(int32(rng.IntN(2000) - 1000))
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	msg := map[string]any{
		"model_name": "simple",
		"inputs": []map[string]any{
			{"name": "INPUT0", "datatype": "INT32", "shape": []int{1, 16}},
			{"name": "INPUT1", "datatype": "INT32", "shape": []int{1, 16}},
		},
		"raw_input_contents": []string{raw(), raw()},
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// runGhz measures simple over gRPC with ghz. ghz has no window events, so
// the server figures cover its whole run, connection set-up included.
func (e *env) runGhz(ctx context.Context, m *model, conc int) (sample, string, error) {
	data := filepath.Join(e.cfg.work, "ghz-simple.json")
	if err := ghzData(data); err != nil {
		return sample{}, "", err
	}
	args := append(e.ghzArgs(conc), "--data-file", data, e.srv.grpc)
	cmdline := "taskset -c " + strconv.Itoa(e.cfg.clientCPU) + " ghz " + strings.Join(args, " ")
	cmd := pinned(ctx, e.cfg.clientCPU, e.cfg.ghzBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	a, err := e.snap(0, m.name, m.version)
	if err != nil {
		return sample{}, cmdline, err
	}
	if err := cmd.Start(); err != nil {
		return sample{}, cmdline, fmt.Errorf("start ghz: %w", err)
	}
	// ghz's own CPU time comes from the process accounting of Wait.
	err = cmd.Wait()
	b, snapErr := e.snap(0, m.name, m.version)
	if err != nil {
		return sample{}, cmdline, fmt.Errorf("%s: %w: %s", cmdline, err, strings.TrimSpace(stderr.String()))
	}
	if snapErr != nil {
		return sample{}, cmdline, snapErr
	}
	var rep ghzReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return sample{}, cmdline, fmt.Errorf("ghz report: %w", err)
	}
	smp := ghzSample(rep)
	fill(&smp, a, b, m.name, m.version)
	if st := cmd.ProcessState; st != nil {
		smp.ClientCores = (st.UserTime() + st.SystemTime()).Seconds() / b.at.Sub(a.at).Seconds()
		smp.OtherCores = max(0, smp.OtherCores-smp.ClientCores)
	}
	return smp, cmdline, nil
}

// ghzSample turns ghz's report into a sample; errors are the calls with
// any status but OK.
func ghzSample(rep ghzReport) sample {
	smp := sample{Throughput: rep.Rps, MeanMs: float64(rep.Average) / 1e6, Seconds: float64(rep.Total) / 1e9}
	for _, l := range rep.Latency {
		v := float64(l.Latency) / 1e6
		switch l.Percentage {
		case 50:
			smp.P50Ms = v
		case 90:
			smp.P90Ms = v
		case 99:
			smp.P99Ms = v
		}
	}
	for code, n := range rep.StatusCodes {
		if code == "OK" {
			smp.Requests += n
		} else {
			smp.Errors += n
		}
	}
	if len(rep.ErrorDist) > 0 {
		smp.ErrorSamples = rep.ErrorDist
	}
	return smp
}

// ortbenchResult is cmd/ortbench's JSON.
type ortbenchResult struct {
	ORTVersion string `json:"ort_version"`
	// Sequences and Chunks describe the stateful mode's data.
	Sequences int `json:"sequences"`
	Chunks    int `json:"chunks_per_sequence"`
	Points    []struct {
		BatchSize   int     `json:"batch_size"`
		ItemsPerSec float64 `json:"items_per_sec"`
		BatchMeanMs float64 `json:"batch_mean_ms"`
		BatchP50Ms  float64 `json:"batch_p50_ms"`
		BatchP99Ms  float64 `json:"batch_p99_ms"`
		CPUPerItem  float64 `json:"cpu_us_per_item"`
		// Sequence0 is, in the stateful mode, sequence 0's outputs.
		Sequence0 []float32 `json:"sequence0"`
	} `json:"points"`
}

// runRaw measures the raw baseline of m on the server's CPU (the server
// idles meanwhile) and returns one sample per batch size, keyed by it,
// and the ONNX Runtime version.
func (e *env) runRaw(ctx context.Context, m *model) (map[int]sample, string, error) {
	args := []string{"--model", m.file, "--batch-sizes", joinInts(m.rawSizes), "--intra-op-threads", "1",
		"--warmup", e.cfg.rawWarmup.String(), "--duration", e.cfg.rawDuration.String()}
	if m.dims != "" {
		args = append(args, "--dims", m.dims)
	}
	res, out, err := e.ortbench(ctx, args)
	if err != nil {
		return nil, "", err
	}
	return out, res.ORTVersion, nil
}

// ortbench runs cmd/ortbench with args on the server's CPU and returns
// its result and one sample per batch size, keyed by it.
func (e *env) ortbench(ctx context.Context, args []string) (*ortbenchResult, map[int]sample, error) {
	cmd := pinned(ctx, e.cfg.serverCPU, e.cfg.ortbenchBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	a, err := machineBusy()
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("ortbench %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	b, err := machineBusy()
	if err != nil {
		return nil, nil, err
	}
	var res ortbenchResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, nil, fmt.Errorf("ortbench output: %w", err)
	}
	secs := time.Since(start).Seconds()
	other := 0.0
	if st := cmd.ProcessState; st != nil {
		other = max(0, ((b-a).Seconds()-(st.UserTime()+st.SystemTime()).Seconds())/secs)
	}
	out := map[int]sample{}
	for _, p := range res.Points {
		out[p.BatchSize] = sample{
			Throughput: p.ItemsPerSec, MeanMs: p.BatchMeanMs, P50Ms: p.BatchP50Ms, P99Ms: p.BatchP99Ms,
			ServerCPUPer1k: p.CPUPerItem / 1000, MeanBatch: float64(p.BatchSize), ComputeMs: p.BatchMeanMs,
			ServerCores: 1, OtherCores: other,
		}
	}
	return &res, out, nil
}

// joinInts writes ns as a comma-separated list.
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
