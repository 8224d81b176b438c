package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// options are the command-line settings.
type options struct {
	model      string
	lib        string
	batchSizes []int
	dims       map[string][]int64
	warmup     time.Duration
	duration   time.Duration
	intraOp    int
	seed       uint64
	// The stateful mode: seqData is the file of chunks (empty: the
	// stateless mode), sequences how many sequences it holds, states the
	// state inputs and outputs, values the inputs given one number.
	seqData   string
	sequences int
	states    []stateSpec
	values    map[string]string
}

// Result is the JSON document ortbench prints; a plain value.
type Result struct {
	Model          string   `json:"model"`
	ORTVersion     string   `json:"ort_version"`
	IntraOpThreads int      `json:"intra_op_threads"`
	Inputs         []string `json:"inputs"`
	// Sequences and Chunks describe the stateful mode's data: how many
	// sequences, of how many chunks each (absent in the stateless mode).
	Sequences int     `json:"sequences,omitempty"`
	Chunks    int     `json:"chunks_per_sequence,omitempty"`
	Points    []Point `json:"points"`
}

// Point is one batch size's measurement; a plain value.
type Point struct {
	BatchSize int `json:"batch_size"`
	// Runs is the number of batches run in the measured window.
	Runs        int     `json:"runs"`
	Seconds     float64 `json:"seconds"`
	ItemsPerSec float64 `json:"items_per_sec"`
	// BatchMeanMs, BatchP50Ms and BatchP99Ms describe one Run call.
	BatchMeanMs float64 `json:"batch_mean_ms"`
	BatchP50Ms  float64 `json:"batch_p50_ms"`
	BatchP99Ms  float64 `json:"batch_p99_ms"`
	// CPUMicrosPerItem is the process's user plus system CPU time in the
	// window divided by the items run: the cost of inference itself.
	CPUMicrosPerItem float64 `json:"cpu_us_per_item"`
	// Sequence0 is, in the stateful mode, row 0 of the model's first
	// output that is no state, for every chunk of sequence 0 in order:
	// the reference a served run of the same sequence is checked against.
	Sequence0 []float32 `json:"sequence0,omitempty"`
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ortbench:", err)
		os.Exit(2)
	}
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ortbench:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "ortbench:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (*options, error) {
	o := &options{dims: map[string][]int64{}}
	var sizes, dims string
	fs := flag.NewFlagSet("ortbench", flag.ContinueOnError)
	fs.StringVar(&o.model, "model", "", "ONNX model file (required)")
	fs.StringVar(&o.lib, "onnxruntime-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, else the copy `make lib` caches)")
	fs.StringVar(&sizes, "batch-sizes", "1,2,4,8", "comma-separated batch sizes to measure")
	fs.StringVar(&dims, "dims", "", "non-batch dimensions of inputs whose model shape leaves them open, as name=AxBxC; several separated by ';'")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured run time before each batch size")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured run time per batch size")
	fs.IntVar(&o.intraOp, "intra-op-threads", 1, "ONNX Runtime intra-op threads (the server's instances.intra_op_threads)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random input data")
	var states, values string
	fs.StringVar(&o.seqData, "sequence-data", "", "stateful mode: a file of float32 little-endian chunks, sequence after sequence, for the one input that is neither a --state nor a --value; every sequence is run once per batch size, the sequences of a batch in lockstep, each chunk's state output fed back as the next chunk's state input (--duration does not apply)")
	fs.IntVar(&o.sequences, "sequences", 1, "stateful mode: how many sequences --sequence-data holds (all of one length)")
	fs.StringVar(&states, "state", "", "stateful mode: state input=output[@axis along which sequences stack, default 0], zeros at each sequence's start; several separated by ';'")
	fs.StringVar(&values, "value", "", "stateful mode: inputs of one element given as name=number (a sample rate); several separated by ';'")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.model == "" {
		return nil, errors.New("--model is required")
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--batch-sizes: %q is not a list of positive integers", sizes)
		}
		o.batchSizes = append(o.batchSizes, n)
	}
	if dims != "" {
		for _, d := range strings.Split(dims, ";") {
			name, shape, ok := strings.Cut(d, "=")
			if !ok {
				return nil, fmt.Errorf("--dims: %q is not name=AxB", d)
			}
			for _, s := range strings.Split(shape, "x") {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("--dims: %q is not name=AxB with positive sizes", d)
				}
				o.dims[name] = append(o.dims[name], n)
			}
		}
	}
	if o.warmup < 0 || o.duration <= 0 || o.intraOp < 0 {
		return nil, errors.New("--warmup must be >= 0, --duration > 0 and --intra-op-threads >= 0")
	}
	var err error
	if o.states, err = parseStates(states); err != nil {
		return nil, err
	}
	if o.values, err = parseValues(values); err != nil {
		return nil, err
	}
	if o.seqData == "" && (len(o.states) > 0 || len(o.values) > 0) {
		return nil, errors.New("--state and --value apply to the stateful mode only: give --sequence-data")
	}
	if o.seqData != "" && (len(o.states) == 0 || o.sequences < 1) {
		return nil, errors.New("--sequence-data needs at least one --state and --sequences >= 1")
	}
	return o, nil
}

func run(o *options) (*Result, error) {
	lib, err := runtime.ResolveLibrary(o.lib)
	if err != nil {
		return nil, err
	}
	ver, err := runtime.Init(lib)
	if err != nil {
		return nil, err
	}
	defer func() { _ = runtime.Shutdown() }()
	sess, err := runtime.Load(o.model, runtime.Options{IntraOpThreads: o.intraOp})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sess.Close() }()

	res := &Result{Model: o.model, ORTVersion: ver, IntraOpThreads: o.intraOp}
	for _, sp := range sess.Inputs() {
		res.Inputs = append(res.Inputs, fmt.Sprintf("%s %s %v", sp.Name, sp.DataType, sp.Shape))
	}
	if o.seqData != "" {
		return res, runStateful(sess, o, res)
	}
	rng := rand.New(rand.NewPCG(o.seed, o.seed))
	for _, bs := range o.batchSizes {
		in, err := inputs(sess.Inputs(), bs, o.dims, rng)
		if err != nil {
			return nil, err
		}
		p, err := measure(sess, in, bs, o.warmup, o.duration)
		if err != nil {
			return nil, fmt.Errorf("batch size %d: %w", bs, err)
		}
		res.Points = append(res.Points, p)
	}
	return res, nil
}

// runStateful measures the stateful mode at every batch size into res.
func runStateful(sess *runtime.Session, o *options, res *Result) error {
	plan, err := newSeqPlan(sess.Inputs(), sess.Outputs(), o.states, o.values, o.dims)
	if err != nil {
		return err
	}
	data, err := readSeqData(o.seqData, o.sequences, plan.rowBytes)
	if err != nil {
		return err
	}
	res.Sequences, res.Chunks = data.sequences, data.chunks
	for _, bs := range o.batchSizes {
		p, err := measureSequences(sess, plan, data, bs, o.warmup)
		if err != nil {
			return fmt.Errorf("batch size %d: %w", bs, err)
		}
		res.Points = append(res.Points, p)
	}
	return nil
}

// inputs builds one random batch of bs rows for the model's inputs.
func inputs(specs []tensor.Spec, bs int, dims map[string][]int64, rng *rand.Rand) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, 0, len(specs))
	for _, sp := range specs {
		shape := slices.Clone(sp.Shape)
		if len(shape) == 0 || shape[0] >= 0 {
			return nil, fmt.Errorf("input %q has shape %v: the first dimension must be the dynamic batch dimension", sp.Name, sp.Shape)
		}
		shape[0] = int64(bs)
		if given, ok := dims[sp.Name]; ok {
			if len(given) != len(shape)-1 {
				return nil, fmt.Errorf("--dims %s: %d dimensions given, the input has %d besides the batch", sp.Name, len(given), len(shape)-1)
			}
			copy(shape[1:], given)
		}
		for i, d := range shape {
			if d < 0 {
				return nil, fmt.Errorf("input %q has shape %v: dimension %d is open; give it with --dims %s=...", sp.Name, sp.Shape, i, sp.Name)
			}
		}
		n, err := tensor.ElementCount(shape)
		if err != nil {
			return nil, err
		}
		data, err := randomData(sp.DataType, int(n), rng)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", sp.Name, err)
		}
		out = append(out, tensor.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: shape, Data: data})
	}
	return out, nil
}

// randomData fills n elements: floats in [0, 1), integers in [0, 100).
func randomData(dt tensor.DataType, n int, rng *rand.Rand) ([]byte, error) {
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("data type %s is not supported", dt)
	}
	b := make([]byte, n*size)
	for i := range n {
		e := b[i*size : (i+1)*size]
		switch dt {
		case tensor.FP32:
			binary.LittleEndian.PutUint32(e, math.Float32bits(rng.Float32()))
		case tensor.FP64:
			binary.LittleEndian.PutUint64(e, math.Float64bits(rng.Float64()))
		case tensor.FP16:
			binary.LittleEndian.PutUint16(e, tensor.Float32ToFP16(rng.Float32()))
		case tensor.BF16:
			binary.LittleEndian.PutUint16(e, tensor.Float32ToBF16(rng.Float32()))
		case tensor.Bool:
			e[0] = byte(rng.IntN(2))
		default:
			// Little-endian integers of any width: the low byte carries
			// the value, the rest stay zero.
			e[0] = byte(rng.IntN(100))
		}
	}
	return b, nil
}

// measure runs in for warmup, then for d, timing every run.
func measure(sess *runtime.Session, in []tensor.Tensor, bs int, warmup, d time.Duration) (Point, error) {
	ctx := context.Background()
	for end := time.Now().Add(warmup); time.Now().Before(end); {
		if _, err := sess.Run(ctx, in); err != nil {
			return Point{}, err
		}
	}
	lat := make([]time.Duration, 0, 4096)
	cpu0 := cpuTime()
	start := time.Now()
	end := start.Add(d)
	for {
		t := time.Now()
		if !t.Before(end) {
			break
		}
		if _, err := sess.Run(ctx, in); err != nil {
			return Point{}, err
		}
		lat = append(lat, time.Since(t))
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	return point(bs, lat, elapsed, cpu, float64(len(lat)*bs)), nil
}

// point summarises the runs of one batch size: lat are the runs' times,
// elapsed and cpu the wall and CPU time they took, items what they ran.
func point(bs int, lat []time.Duration, elapsed, cpu time.Duration, items float64) Point {
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	return Point{
		BatchSize:        bs,
		Runs:             len(lat),
		Seconds:          elapsed.Seconds(),
		ItemsPerSec:      items / elapsed.Seconds(),
		BatchMeanMs:      ms(sum / time.Duration(len(lat))),
		BatchP50Ms:       ms(quantile(lat, 0.50)),
		BatchP99Ms:       ms(quantile(lat, 0.99)),
		CPUMicrosPerItem: float64(cpu.Microseconds()) / items,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile returns the q-quantile of sorted by the nearest-rank rule.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// cpuTime is this process's user plus system CPU time, every thread
// included, so ONNX Runtime's own threads count too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
