package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/status"
)

// options are the command-line settings.
type options struct {
	protocol    string
	addr        string
	model       string
	version     string
	workload    string
	concurrency int
	conns       int
	rate        float64
	warmup      time.Duration
	duration    time.Duration
	events      bool
	seed        uint64
	// seqData is the stateful mode's audio file (workload silero_vad).
	seqData string
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.protocol, "protocol", protoGRPC, "grpc, http-json or http-binary")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8001", "server address host:port (the gRPC or the HTTP port)")
	fs.StringVar(&o.model, "model", "", "model name on the server (default: the workload's name)")
	fs.StringVar(&o.version, "model-version", "", "model version (default: the server's choice)")
	fs.StringVar(&o.workload, "workload", "simple", "requests and checks: simple, classifier, ocr_cls or silero_vad (with --sequence-data)")
	fs.IntVar(&o.concurrency, "concurrency", 1, "workers, each with one request in flight")
	fs.IntVar(&o.conns, "grpc-connections", 1, "gRPC connections the workers share (HTTP uses one connection per worker)")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second sent on a fixed schedule (open loop); 0 = closed loop")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before the window")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window")
	fs.BoolVar(&o.events, "events", false, `print {"event":"start"} and {"event":"end"} lines when the window opens and closes`)
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the request data")
	fs.StringVar(&o.seqData, "sequence-data", "", "workload silero_vad: a file of float32 little-endian 16 kHz audio, --concurrency sequences of 512-sample chunks one after another; each sequence runs at once on its own ModelStreamInfer stream (--duration does not apply: the window is one pass over every sequence)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.model == "" {
		o.model = o.workload
	}
	switch {
	case o.protocol != protoGRPC && o.protocol != protoHTTPJSON && o.protocol != protoHTTPBinary:
		return nil, fmt.Errorf("--protocol: want grpc, http-json or http-binary, got %q", o.protocol)
	case o.concurrency < 1 || o.conns < 1:
		return nil, errors.New("--concurrency and --grpc-connections must be >= 1")
	case o.rate < 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
		return nil, errors.New("--rate must be a finite number >= 0")
	case o.warmup < 0 || o.duration <= 0:
		return nil, errors.New("--warmup must be >= 0 and --duration > 0")
	case (o.workload == workloadVAD) != (o.seqData != ""):
		return nil, fmt.Errorf("--sequence-data goes with --workload %s, and that workload needs it", workloadVAD)
	case o.seqData != "" && (o.protocol != protoGRPC || o.rate > 0):
		return nil, errors.New("--sequence-data runs closed-loop over gRPC streams only")
	}
	return o, nil
}

// Result is the JSON document loadgen prints last; a plain value.
type Result struct {
	Protocol    string  `json:"protocol"`
	Model       string  `json:"model"`
	Workload    string  `json:"workload"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	// Requests counts answers that arrived in the window and passed
	// their check; Errors those that arrived in the window and did not.
	Requests     int64            `json:"requests"`
	Errors       int64            `json:"errors"`
	ErrorSamples map[string]int64 `json:"error_samples,omitempty"`
	WarmupErrors int64            `json:"warmup_errors"`
	// Throughput is Requests per second of window.
	Throughput float64 `json:"throughput"`
	LatencyMs  Latency `json:"latency_ms"`
	// Sequences and Chunks describe the stateful mode's audio, and
	// Sequence0 holds the speech probabilities answered for sequence 0,
	// chunk by chunk (absent for other workloads).
	Sequences int       `json:"sequences,omitempty"`
	Chunks    int       `json:"chunks_per_sequence,omitempty"`
	Sequence0 []float32 `json:"sequence0,omitempty"`
	// LateSends counts open-loop requests sent more than a millisecond
	// after their scheduled time because every worker was busy; their
	// latency counts from the scheduled time. Requests a free worker sent
	// on time count from the actual send.
	LateSends int64 `json:"late_sends,omitempty"`
}

// Latency summarises the latencies of successful requests, in
// milliseconds; a plain value.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// drainGrace bounds how long run waits, after the window closed, for
// requests still in flight before it abandons them.
const drainGrace = 30 * time.Second

func run(ctx context.Context, o *options, events io.Writer) (*Result, error) {
	if o.seqData != "" {
		return runSequences(ctx, o, events)
	}
	w, err := newWorkload(o.workload, o.seed)
	if err != nil {
		return nil, err
	}
	callers := make([]caller, o.concurrency)
	switch o.protocol {
	case protoGRPC:
		t, err := newGRPCTarget(o.addr, o.model, o.version, o.conns, w)
		if err != nil {
			return nil, err
		}
		defer t.close()
		for i := range callers {
			callers[i] = t.caller(i)
		}
	default:
		t := newHTTPTarget(o.addr, o.model, o.version, o.protocol == protoHTTPBinary, o.concurrency, w)
		defer t.client.CloseIdleConnections()
		for i := range callers {
			callers[i] = t.caller(i)
		}
	}

	// Calls get a context without a deadline, as a client without a
	// per-call timeout sends them; it is cancelled only to abandon the run.
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	l := &loop{
		o:       o,
		t0:      start.Add(o.warmup),
		t1:      start.Add(o.warmup + o.duration),
		start:   start,
		workers: make([]workerStats, o.concurrency),
	}
	var wg sync.WaitGroup
	for i, c := range callers {
		wg.Go(func() { l.worker(callCtx, i, c) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	if err := waitUntil(ctx, l.t0); err != nil {
		cancel()
		<-done
		return nil, err
	}
	if o.events {
		fmt.Fprintln(events, `{"event":"start"}`)
	}
	if err := waitUntil(ctx, l.t1); err != nil {
		cancel()
		<-done
		return nil, err
	}
	if o.events {
		fmt.Fprintln(events, `{"event":"end"}`)
	}
	select {
	case <-done:
	case <-time.After(drainGrace):
		cancel()
		<-done
	}
	return l.result(w.name), nil
}

func waitUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is one run's schedule and the statistics its workers collect.
type loop struct {
	o      *options
	start  time.Time
	t0, t1 time.Time
	// next numbers open-loop send slots.
	next    atomic.Int64
	workers []workerStats
}

// workerStats is what one worker saw; only that worker writes it until
// the run ends.
type workerStats struct {
	lat          []time.Duration
	errors       int64
	warmupErrors int64
	late         int64
	samples      map[string]int64
}

func (l *loop) worker(ctx context.Context, i int, c caller) {
	st := &l.workers[i]
	// Closed-loop at 128 workers and 30k/s collects about 1k latencies per
	// worker per second.
	st.lat = make([]time.Duration, 0, 1024)
	var interval time.Duration
	if l.o.rate > 0 {
		interval = time.Duration(float64(time.Second) / l.o.rate)
	}
	for k := i; ; k++ {
		if ctx.Err() != nil {
			return
		}
		var begin time.Time
		if interval > 0 {
			slot := l.next.Add(1) - 1
			sched := l.start.Add(time.Duration(slot) * interval)
			if !sched.Before(l.t1) {
				return
			}
			if d := time.Until(sched); d > 0 {
				// A worker was free before the scheduled time: latency
				// counts from the actual send, so the sleep's own
				// lateness is not charged to the server.
				time.Sleep(d)
				begin = time.Now()
			} else {
				// Every worker was busy at the scheduled time: the
				// request waited for the server's earlier answers, and
				// that wait is part of its latency.
				begin = sched
				if d < -time.Millisecond {
					st.late++
				}
			}
		} else {
			begin = time.Now()
			if !begin.Before(l.t1) {
				return
			}
		}
		err := c.call(ctx, k%variantCount)
		end := time.Now()
		switch {
		case end.Before(l.t0):
			if err != nil {
				st.warmupErrors++
			}
		case !end.Before(l.t1):
			// Answered after the window closed: not counted.
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			st.errors++
			if st.samples == nil {
				st.samples = map[string]int64{}
			}
			st.samples[errorKey(err)]++
		default:
			st.lat = append(st.lat, end.Sub(begin))
		}
	}
}

// errorKey is an error's message with the gRPC status code kept, so
// errors group by cause.
func errorKey(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + truncate(s.Message(), 160)
	}
	return truncate(err.Error(), 160)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// maxSamples bounds the distinct error messages a result lists.
const maxSamples = 8

func (l *loop) result(workload string) *Result {
	o := l.o
	r := &Result{
		Protocol: o.protocol, Model: o.model, Workload: workload, Concurrency: o.concurrency,
		Rate: o.rate, Seconds: l.t1.Sub(l.t0).Seconds(),
	}
	var lat []time.Duration
	samples := map[string]int64{}
	for i := range l.workers {
		st := &l.workers[i]
		lat = append(lat, st.lat...)
		r.Errors += st.errors
		r.WarmupErrors += st.warmupErrors
		r.LateSends += st.late
		for k, n := range st.samples {
			samples[k] += n
		}
	}
	r.ErrorSamples = commonest(samples)
	r.Requests = int64(len(lat))
	r.Throughput = float64(r.Requests) / r.Seconds
	r.LatencyMs = summarize(lat)
	return r
}

// commonest returns the maxSamples commonest error messages of samples,
// or nil when there are none.
func commonest(samples map[string]int64) map[string]int64 {
	if len(samples) == 0 {
		return nil
	}
	keys := make([]string, 0, len(samples))
	for k := range samples {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return samples[keys[a]] > samples[keys[b]] })
	out := map[string]int64{}
	for _, k := range keys[:min(len(keys), maxSamples)] {
		out[k] = samples[k]
	}
	return out
}

// summarize sorts lat and reads its percentiles by the nearest-rank rule.
func summarize(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return ms(lat[max(i, 0)])
	}
	return Latency{
		Mean: ms(sum / time.Duration(len(lat))),
		P50:  q(0.50),
		P90:  q(0.90),
		P99:  q(0.99),
		Max:  ms(lat[len(lat)-1]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
