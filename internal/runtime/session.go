package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Errors of sessions; each is wrapped with context.
var (
	// ErrProvider is wrapped when an execution provider is unknown, cannot
	// be configured, or is missing from the loaded library.
	ErrProvider = errors.New("execution provider")
	// ErrRun is wrapped by failures of ONNX Runtime while running a model
	// on valid inputs. The message keeps ONNX Runtime's reason.
	ErrRun = errors.New("onnx runtime run failed")
	// ErrClosed is returned by Run on a closed Session.
	ErrClosed = errors.New("session closed")
)

// Provider names accepted in Options.Provider.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// Options configures one Session. The zero value runs on the CPU with one
// intra-op thread per available CPU and every graph optimisation. Options is
// a plain value, safe to copy and share.
type Options struct {
	// Provider is "cpu" (or "") or "cuda".
	Provider string
	// DeviceID is the CUDA device ordinal; ignored on the CPU.
	DeviceID int
	// IntraOpThreads bounds the threads one operator may use; 0 means
	// AvailableCPUs().
	IntraOpThreads int
	// InterOpThreads bounds the threads running independent operators in
	// parallel; 0 leaves ONNX Runtime's default.
	InterOpThreads int
	// GraphOptimization is "disable", "basic", "extended" or "all";
	// "" means "all".
	GraphOptimization string
	// AllowSpinning, when not nil, sets whether idle intra-op and inter-op
	// threads spin waiting for work (ONNX Runtime's
	// session.intra_op.allow_spinning and session.inter_op.allow_spinning);
	// nil keeps ONNX Runtime's default, which spins. Never written through.
	AllowSpinning *bool
}

var optimizationLevels = map[string]ort.GraphOptimizationLevel{
	"":         ort.GraphOptimizationLevelEnableAll,
	"all":      ort.GraphOptimizationLevelEnableAll,
	"extended": ort.GraphOptimizationLevelEnableExtended,
	"basic":    ort.GraphOptimizationLevelEnableBasic,
	"disable":  ort.GraphOptimizationLevelDisableAll,
}

// liveSessions counts sessions loaded and not yet closed.
var liveSessions atomic.Int64

// LiveSessions returns the number of sessions loaded and not yet closed, so
// tests can prove that nothing leaks.
func LiveSessions() int64 { return liveSessions.Load() }

// Session is one loaded model. Run is safe for concurrent use; Close waits
// for runs in progress and then frees the ONNX Runtime session.
type Session struct {
	sess    *ort.DynamicAdvancedSession
	inputs  []tensor.Spec
	outputs []tensor.Spec
	// prealloc marks FP16 and BF16 outputs, which Run allocates itself:
	// the binding copies only half of such an output when it allocates
	// it, so Run hands ONNX Runtime a buffer of the right size instead.
	prealloc []bool
	// batchInput is the input whose first dimension sizes a preallocated
	// output's dynamic first dimension, or -1.
	batchInput int

	// mu is held shared by runs and exclusively by Close, so the session
	// is never released under a run.
	mu     sync.RWMutex
	closed bool
}

// Load creates a session for the ONNX model file at path. Errors may name
// the file; they are meant for logs and the repository index. Init must have
// been called.
func Load(path string, opts Options) (*Session, error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("load %s: %w: Init has not been called", path, ErrLibrary)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	so, err := sessionOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer so.Destroy()

	ins, outs, err := describe(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	s := &Session{batchInput: -1}
	inNames := make([]string, len(ins))
	for i, info := range ins {
		spec, err := specFromInfo("input", info)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		s.inputs = append(s.inputs, spec)
		inNames[i] = spec.Name
		if s.batchInput < 0 && len(spec.Shape) > 0 && spec.Shape[0] < 0 {
			s.batchInput = i
		}
	}
	outNames := make([]string, len(outs))
	for i, info := range outs {
		spec, err := specFromInfo("output", info)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		pre := spec.DataType == tensor.FP16 || spec.DataType == tensor.BF16
		if pre {
			if err := s.checkPreallocatable(spec); err != nil {
				return nil, fmt.Errorf("load %s: %w", path, err)
			}
		}
		s.outputs = append(s.outputs, spec)
		s.prealloc = append(s.prealloc, pre)
		outNames[i] = spec.Name
	}
	if len(inNames) == 0 || len(outNames) == 0 {
		return nil, fmt.Errorf("load %s: the model has %d inputs and %d outputs; it needs at least one of each", path, len(inNames), len(outNames))
	}
	s.sess, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("load %s: %s", path, unwrapMessage(err))
	}
	liveSessions.Add(1)
	return s, nil
}

// checkPreallocatable reports whether Run can size an FP16 or BF16 output
// before running: every dimension fixed, except a dynamic first dimension
// that follows the batch input's.
func (s *Session) checkPreallocatable(spec tensor.Spec) error {
	for i, d := range spec.Shape {
		if d >= 0 {
			continue
		}
		if i > 0 || s.batchInput < 0 {
			return fmt.Errorf("output %q: %s output of shape %v: only a batch (first) dimension may be dynamic for %s outputs, and only when an input has a dynamic batch dimension: %w",
				spec.Name, spec.DataType, spec.Shape, spec.DataType, ErrUnsupportedType)
		}
	}
	return nil
}

// describe reads the model's inputs and outputs through a throwaway session
// that neither optimises nor spawns threads, so it costs little more than
// parsing the file.
func describe(path string) (ins, outs []ort.InputOutputInfo, err error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, err
	}
	if err := so.SetIntraOpNumThreads(1); err != nil {
		return nil, nil, err
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, nil, err
	}
	ins, outs, err = ort.GetInputOutputInfoWithOptions(path, so)
	if err != nil {
		return nil, nil, errors.New(unwrapMessage(err))
	}
	return ins, outs, nil
}

// sessionOptions builds ONNX Runtime session options from opts. The caller
// destroys them.
func sessionOptions(opts Options) (*ort.SessionOptions, error) {
	level, ok := optimizationLevels[opts.GraphOptimization]
	if !ok {
		return nil, fmt.Errorf("graph optimization %q: want disable, basic, extended or all", opts.GraphOptimization)
	}
	if opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("thread counts must not be negative (intra-op %d, inter-op %d)", opts.IntraOpThreads, opts.InterOpThreads)
	}
	provider := strings.ToLower(opts.Provider)
	if provider != "" && provider != ProviderCPU && provider != ProviderCUDA {
		return nil, fmt.Errorf("%w %q: unknown; use %s or %s", ErrProvider, opts.Provider, ProviderCPU, ProviderCUDA)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	ok = false
	defer func() {
		if !ok {
			_ = so.Destroy()
		}
	}()
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("graph optimization: %w", err)
	}
	// Every failure of a run is returned, and the server logs it as it
	// classifies it (an input the model rejects at warn, rate-limited).
	// ONNX Runtime's own line on stderr for each failed run would repeat
	// it at error level, unlimited, for every bad request.
	if err := so.SetLogSeverityLevel(ort.LoggingLevelFatal); err != nil {
		return nil, fmt.Errorf("log severity: %w", err)
	}
	intra := opts.IntraOpThreads
	if intra == 0 {
		intra = AvailableCPUs()
	}
	if err := so.SetIntraOpNumThreads(intra); err != nil {
		return nil, fmt.Errorf("intra-op threads: %w", err)
	}
	if opts.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
			return nil, fmt.Errorf("inter-op threads: %w", err)
		}
	}
	if opts.AllowSpinning != nil {
		v := "0"
		if *opts.AllowSpinning {
			v = "1"
		}
		for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
			if err := so.AddSessionConfigEntry(key, v); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	if provider == ProviderCUDA {
		if err := appendCUDA(so, opts.DeviceID); err != nil {
			return nil, err
		}
	}
	ok = true
	return so, nil
}

// appendCUDA adds the CUDA execution provider on device id. A CPU-only
// library fails here, which is the message an operator who set
// provider: cuda needs to see.
func appendCUDA(so *ort.SessionOptions, id int) error {
	if id < 0 {
		return fmt.Errorf("%w cuda: device_id %d is negative", ErrProvider, id)
	}
	unavailable := func(err error) error {
		return fmt.Errorf("%w cuda: CUDA execution provider is not available in %s (%s); use a GPU build of ONNX Runtime with libonnxruntime_providers_cuda.so (see Dockerfile.gpu) or set instances.provider: cpu",
			ErrProvider, libraryPath(), ortMessage(err.Error()))
	}
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return unavailable(err)
	}
	defer co.Destroy()
	// Setting an option is where a CPU build first tries, and fails, to
	// load the provider libraries.
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(id)}); err != nil {
		return unavailable(err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return unavailable(err)
	}
	return nil
}

// unwrapMessage drops the binding's "Error creating ..." prefixes, keeping
// ONNX Runtime's own message.
func unwrapMessage(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return ortMessage(err.Error())
}

// ortStatusMark precedes the status code in ONNX Runtime's messages, after
// the source location of the failure.
const ortStatusMark = "[ONNXRuntimeError] : "

// ortSourceLocation matches the build-tree file, line and C++ function that
// ONNX Runtime puts in front of some messages; they mean nothing to a client.
var ortSourceLocation = regexp.MustCompile(`\S*onnxruntime_src/\S+:\d+ (?:[^()]*\([^()]*\) )?`)

// ortMessage puts an ONNX Runtime message on one line and drops the source
// locations and the numeric code that lead it, keeping the code's name:
// "INVALID_ARGUMENT : Got invalid dimensions ...".
func ortMessage(msg string) string {
	if i := strings.Index(msg, ortStatusMark); i >= 0 {
		msg = msg[i+len(ortStatusMark):]
		if _, rest, ok := strings.Cut(msg, " : "); ok {
			msg = rest
		}
	}
	msg = ortSourceLocation.ReplaceAllString(msg, "")
	return strings.Join(strings.Fields(msg), " ")
}

// Inputs returns the model's declared inputs in declaration order; a dynamic
// dimension is -1. The caller must not modify the result.
func (s *Session) Inputs() []tensor.Spec { return s.inputs }

// Outputs returns the model's declared outputs in declaration order, as Run
// returns them; a dynamic dimension is -1. The caller must not modify the
// result.
func (s *Session) Outputs() []tensor.Spec { return s.outputs }

// Run runs the model once. Precondition, owned by the caller (the serving
// core checks each request against the model's inputs once): in holds
// every model input exactly once, in declared order, each matching its
// spec. Run checks only what keeps ONNX Runtime inside Go's buffers (see
// check); a wrong count or a buffer shorter or longer than its shape is an
// error wrapping tensor.ErrInvalid, and ONNX Runtime's own rejections of
// an input wrap it too. Run returns every model output in
// declared order; their Data is fresh Go memory owned by the caller. Run
// reads in only while it runs and keeps no reference to it afterwards.
//
// A context that ends before or during the run stops it; the error then
// wraps ctx.Err(). ONNX Runtime's own failures wrap ErrRun; those where ONNX
// Runtime rejects the inputs (INVALID_ARGUMENT) wrap tensor.ErrInvalid too.
func (s *Session) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	err := s.check(in)
	if err != nil {
		return nil, err
	}
	ordered := in

	var pinner goruntime.Pinner
	defer pinner.Unpin()
	inputs := make([]ort.Value, len(ordered))
	defer destroyAll(inputs)
	for i, t := range ordered {
		if inputs[i], err = newInput(t, &pinner); err != nil {
			return nil, err
		}
	}
	outputs := make([]ort.Value, len(s.outputs))
	defer destroyAll(outputs)
	buffers := make([][]byte, len(s.outputs))
	var scalars []func() []byte
	for i, spec := range s.outputs {
		if len(spec.Shape) == 0 {
			if scalars == nil {
				scalars = make([]func() []byte, len(s.outputs))
			}
			if outputs[i], scalars[i], err = newScalarOutput(spec.DataType); err != nil {
				return nil, fmt.Errorf("output %q: %w", spec.Name, err)
			}
			continue
		}
		if s.prealloc[i] {
			if outputs[i], buffers[i], err = s.newOutput(spec, ordered, &pinner); err != nil {
				return nil, err
			}
		}
	}

	ro, release, err := runOptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRun, err)
	}
	err = s.sess.RunWithOptions(inputs, outputs, ro)
	release()
	if err != nil {
		return nil, runFailure(ctx, err)
	}

	result := make([]tensor.Tensor, len(s.outputs))
	for i, spec := range s.outputs {
		if scalars != nil && scalars[i] != nil {
			result[i] = tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: []int64{}, Data: scalars[i]()}
			continue
		}
		if s.prealloc[i] {
			shape := []int64(outputs[i].GetShape())
			n, err := tensor.ElementCount(shape)
			if err != nil {
				return nil, fmt.Errorf("%w: output %q: %v", ErrRun, spec.Name, err)
			}
			result[i] = tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape, Data: buffers[i][: 2*n : 2*n]}
			continue
		}
		if result[i], err = fromOutput(spec, outputs[i]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRun, err)
		}
	}
	return result, nil
}

// runFailure classifies an error of ONNX Runtime's Run: stopped by ctx,
// inputs rejected, or anything else.
func runFailure(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("run stopped: %w", ctxErr)
	}
	msg := unwrapMessage(err)
	if strings.HasPrefix(msg, "INVALID_ARGUMENT") {
		// ONNX Runtime rejected the inputs themselves: the client's
		// fault as much as any other invalid tensor.
		return fmt.Errorf("%w: %w", ErrRun, tensor.Invalidf("%s", msg))
	}
	return fmt.Errorf("%w: %s", ErrRun, msg)
}

// check is the one guard at the cgo boundary. Run's caller owns the input
// checks (names, datatypes and shapes against the model, in declared
// order); this only makes sure ONNX Runtime never reads past a Go buffer:
// the input count, and each fixed-size buffer's length against its shape.
// BYTES buffers are bounds-checked by their conversion.
func (s *Session) check(in []tensor.Tensor) error {
	if len(in) != len(s.inputs) {
		return tensor.Invalidf("%d inputs given; the model's inputs are %s", len(in), s.inputNames())
	}
	for _, t := range in {
		if t.DataType == tensor.Bytes {
			continue
		}
		n, err := tensor.ElementCount(t.Shape)
		if err != nil {
			return fmt.Errorf("input %q: %w", t.Name, err)
		}
		if want := n * int64(t.DataType.Size()); int64(len(t.Data)) != want {
			return tensor.Invalidf("input %q: shape %v of %s needs %d bytes of data, got %d", t.Name, t.Shape, t.DataType, want, len(t.Data))
		}
	}
	return nil
}

func (s *Session) inputNames() string {
	names := make([]string, len(s.inputs))
	for i, in := range s.inputs {
		names[i] = strconv.Quote(in.Name)
	}
	return strings.Join(names, ", ")
}

// newOutput allocates an FP16 or BF16 output, sizing a dynamic first
// dimension from the batch input. The buffer is pinned because ONNX Runtime
// writes into it during the run.
func (s *Session) newOutput(spec tensor.Spec, in []tensor.Tensor, pinner *goruntime.Pinner) (ort.Value, []byte, error) {
	shape := make([]int64, len(spec.Shape))
	copy(shape, spec.Shape)
	if shape[0] < 0 {
		shape[0] = in[s.batchInput].Shape[0]
	}
	n, err := tensor.ElementCount(shape)
	if err != nil {
		return nil, nil, fmt.Errorf("output %q: %w", spec.Name, err)
	}
	// One spare byte: the binding refuses an empty buffer.
	buf := make([]byte, 2*n+1)
	pinner.Pin(&buf[0])
	v, err := ort.NewCustomDataTensor(ort.Shape(shape), buf, onnxTypes[spec.DataType])
	if err != nil {
		return nil, nil, fmt.Errorf("output %q: %w", spec.Name, err)
	}
	return v, buf, nil
}

// runOptions returns run options that stop the run when ctx ends, and a
// release function to call once the run has returned; for a context that
// cannot end it returns nil options.
func runOptions(ctx context.Context) (*ort.RunOptions, func(), error) {
	if ctx.Done() == nil {
		return nil, func() {}, nil
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, nil, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = ro.Terminate()
	})
	return ro, func() {
		if !stop() {
			// The terminate call is running or done; wait for it
			// before freeing the options it uses.
			<-fired
		}
		_ = ro.Destroy()
	}, nil
}

// Close frees the ONNX Runtime session after any runs in progress finish.
// Later calls return nil; later runs return ErrClosed.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	liveSessions.Add(-1)
	if err := s.sess.Destroy(); err != nil {
		return fmt.Errorf("close session: %w", err)
	}
	return nil
}
