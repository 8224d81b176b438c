package repository

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every error that says a config.yaml (or a
// traffic block given through the API) is malformed or holds an impossible
// value.
var ErrInvalidConfig = errors.New("invalid model config")

// Defaults and limits of config.yaml. A field left out of the file takes the
// default; a value beyond a limit is rejected.
const (
	// DefaultMaxQueueDelay is how long a request waits for companions when
	// dynamic_batching is present without max_queue_delay.
	DefaultMaxQueueDelay = 500 * time.Microsecond
	// MaxQueueDelayLimit bounds max_queue_delay: a longer wait is a typo, not
	// a batching policy.
	MaxQueueDelayLimit = 10 * time.Second
	// DefaultMaxQueueSize is the queue bound when dynamic_batching is present
	// without max_queue_size.
	DefaultMaxQueueSize = 1024
	// DefaultQueueTimeout is the queue deadline for a request that carries
	// none, when dynamic_batching is present without default_timeout.
	DefaultQueueTimeout = 5 * time.Second
	// MaxBatchSizeLimit bounds max_batch_size: callers size buffers by it.
	MaxBatchSizeLimit = 1 << 20
	// MaxQueueSizeLimit bounds max_queue_size: callers size queues by it.
	MaxQueueSizeLimit = 1 << 20
	// MaxInstanceCount bounds instances.count.
	MaxInstanceCount = 64
	// MaxThreads bounds instances.intra_op_threads and inter_op_threads
	// each: ONNX Runtime starts that many threads per session, up front.
	MaxThreads = 256
	// MaxModelThreads bounds instances.count times the threads one
	// session starts (intra_op_threads + inter_op_threads), so one config
	// cannot make the server start tens of thousands of threads.
	MaxModelThreads = 1024
	// DefaultStickyKey is the header, gRPC metadata key or request parameter
	// that pins a caller to one traffic arm when traffic.sticky_key is absent.
	DefaultStickyKey = "x-routing-key"
	// AutoMaxBatchSize is max_batch_size when it is auto: the most rows one
	// request may carry and the largest batch size measured.
	AutoMaxBatchSize = 64
	// DefaultTuningTime is how long measuring batch sizes for auto may take
	// per version when dynamic_batching.tuning_time is absent.
	DefaultTuningTime = time.Second
	// MaxTuningTime bounds dynamic_batching.tuning_time: loading waits for it.
	MaxTuningTime = time.Minute
	// MaxTrafficWeight bounds one traffic.split weight, so that any sum of
	// weights fits comfortably in an int.
	MaxTrafficWeight = 1_000_000
)

// Execution providers accepted in instances.provider.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// Dispatch rules accepted in dynamic_batching.dispatch.
const (
	// DispatchImmediate (the default) never holds a request back: an idle
	// instance runs what is queued now, and batches form from the requests
	// that arrive while every instance is busy.
	DispatchImmediate = "immediate"
	// DispatchWait is Triton's rule: the oldest request waits up to
	// max_queue_delay for companions before its batch runs.
	DispatchWait = "wait"
)

// Graph optimization levels accepted in instances.graph_optimization, in
// ONNX Runtime's order from none to every optimization.
const (
	GraphOptDisable  = "disable"
	GraphOptBasic    = "basic"
	GraphOptExtended = "extended"
	GraphOptAll      = "all"
)

// Config is one model's config.yaml after defaults are applied. Every field
// of the file is optional. The zero Config is not valid (instances.count is
// 0); start from DefaultConfig or ParseConfig. A Config is a plain value:
// safe for concurrent reads, and Clone gives a copy that shares nothing.
type Config struct {
	// MaxBatchSize is the largest batch the model accepts along its first
	// dimension. 0 (the default) means the model has no batch dimension and
	// is never batched.
	// At most MaxBatchSizeLimit.
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxBatchSizeAuto is set by "max_batch_size: auto", and when the model
	// has no config.yaml. MaxBatchSize is then AutoMaxBatchSize; a model
	// whose inputs and outputs do not all have a dynamic first dimension is
	// served without a batch dimension instead, and a batching one caps its
	// batches at the size measured fastest per item (as
	// DynamicBatching.PreferredBatchSizesAuto).
	MaxBatchSizeAuto bool `yaml:"-"`
	// DynamicBatching groups concurrent requests into batches; nil (the
	// block is absent) means every request runs alone.
	DynamicBatching *DynamicBatching `yaml:"dynamic_batching"`
	// Instances says how and where batches execute.
	Instances Instances `yaml:"instances"`
	// PayloadLog writes sampled requests and responses to the payload log
	// sinks; nil when the block is absent (nothing logged).
	PayloadLog *PayloadLog `yaml:"payload_log"`
	// VersionPolicy picks which version folders are served.
	VersionPolicy VersionPolicy `yaml:"version_policy"`
	// Traffic splits requests that name no version among the ready
	// versions; nil means the newest ready version takes all of them.
	Traffic *Traffic `yaml:"traffic"`
	// Warmup lists inference runs done before a version turns READY.
	Warmup Warmup `yaml:"warmup"`
	// Rollout is the progressive-delivery policy; nil (the block is
	// absent) means DefaultRollout for rollouts started through the API,
	// and no automatic rollout.
	Rollout *Rollout `yaml:"rollout,omitempty"`
	// SequenceBatching keeps per-sequence state on the server for stateful
	// models; nil (the block is absent) means requests are independent.
	SequenceBatching *SequenceBatching `yaml:"sequence_batching,omitempty"`
	// Check is the latency budget `onnxserve check` holds each version
	// to; nil (the block is absent) means none. The server ignores it.
	Check *CheckBudget `yaml:"check"`
	// Monitoring turns on the model-quality loop (predictions kept for
	// joining with ground truth posted back); nil when the block is absent.
	Monitoring *Monitoring `yaml:"monitoring"`
	// Drift monitors the distribution of inputs and outputs per version;
	// nil (the block is absent) means no drift statistics.
	Drift *Drift `yaml:"drift"`
	// Validation checks every request's input values; nil (the block is
	// absent) means none.
	Validation *Validation `yaml:"validation"`
}

// Sequence batching defaults and limits.
const (
	// DefaultMaxSequenceIdle is how long a sequence may go without a
	// request before it is ended, when max_sequence_idle is absent.
	DefaultMaxSequenceIdle = 60 * time.Second
	// DefaultMaxSequences bounds the active sequences of a model when
	// max_sequences is absent.
	DefaultMaxSequences = 10000
	// MaxSequencesLimit bounds max_sequences: each holds its state in memory.
	MaxSequencesLimit = 1 << 24
	// StateInitialZeros is the only initial value of a state: all zeros.
	StateInitialZeros = "zeros"
)

// SequenceBatching is the sequence_batching block: requests carry a
// sequence id, requests of one sequence run in order, and the model's state
// inputs are fed from the sequence's stored state rather than by the
// client. A plain value, safe for concurrent reads.
type SequenceBatching struct {
	// MaxSequenceIdle ends a sequence that had no request for this long and
	// frees its state. [DefaultMaxSequenceIdle], > 0.
	MaxSequenceIdle time.Duration `yaml:"max_sequence_idle"`
	// MaxSequences bounds the active sequences of the model.
	// [DefaultMaxSequences], 1..MaxSequencesLimit.
	MaxSequences int `yaml:"max_sequences"`
	// State lists the model's state pairs; at least one.
	State []SequenceState `yaml:"state"`
}

// SequenceState pairs a model input fed from the sequence's stored state
// with the model output stored as its next value.
type SequenceState struct {
	// Input names the model input the stored state is fed to.
	Input string `yaml:"input"`
	// Output names the model output stored as the next state.
	Output string `yaml:"output"`
	// BatchAxis is the axis along which the states of different sequences
	// are stacked into one batch. [0], >= 0; the model's rank bounds it.
	BatchAxis int `yaml:"batch_axis"`
	// Initial is the state of a sequence's first request: StateInitialZeros.
	Initial string `yaml:"initial"`
}

// CheckBudget is the check block: `onnxserve check` runs batches of Batch
// rows through each version and fails it when their 99th percentile
// latency exceeds P99. A plain value, safe for concurrent reads.
type CheckBudget struct {
	// Batch is the rows per measured request. [1], in 1..max(MaxBatchSize, 1).
	Batch int `yaml:"batch"`
	// P99 is the budget for the 99th percentile of one request's latency,
	// measured on the machine running the check; required, > 0.
	P99 time.Duration `yaml:"p99"`
}

// DynamicBatching is the dynamic_batching block. Fields absent from a present
// block take the Default* constants of this package. Like Config, it is a
// plain value, safe for concurrent reads.
type DynamicBatching struct {
	// MaxQueueDelay is the longest a request waits for companions before
	// its batch runs anyway; 0 runs with whatever is queued.
	// [DefaultMaxQueueDelay], at most MaxQueueDelayLimit.
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	// PreferredBatchSizes are batch sizes the batcher aims for, each in
	// 1..MaxBatchSize, ascending without duplicates after ParseConfig.
	// Empty means "as large as max_batch_size allows".
	PreferredBatchSizes []int `yaml:"preferred_batch_sizes,omitempty"`
	// MaxQueueSize bounds the requests waiting; one more is refused with
	// 429 / RESOURCE_EXHAUSTED. [DefaultMaxQueueSize], 1..MaxQueueSizeLimit.
	MaxQueueSize int `yaml:"max_queue_size"`
	// DefaultTimeout is the queue deadline of a request whose client set
	// none. [DefaultQueueTimeout], > 0: every wait has a deadline.
	DefaultTimeout time.Duration `yaml:"default_timeout"`
	// Dispatch is DispatchImmediate or DispatchWait; "" means
	// DispatchImmediate.
	Dispatch string `yaml:"dispatch,omitempty"`
	// PreferredBatchSizesAuto is set by "preferred_batch_sizes: auto": the
	// version is timed at power-of-two batch sizes up to MaxBatchSize while
	// it loads, and batches are capped at the size with the most items per
	// second. PreferredBatchSizes is then empty.
	PreferredBatchSizesAuto bool `yaml:"-"`
	// TuningTime bounds that measurement per version; 0 means
	// DefaultTuningTime. At most MaxTuningTime.
	TuningTime time.Duration `yaml:"tuning_time,omitempty"`
}

// AutoBatch reports whether the version's batch cap is chosen by
// measurement: batching is on and max_batch_size or preferred_batch_sizes
// is auto.
func (c Config) AutoBatch() bool {
	return c.DynamicBatching != nil && (c.MaxBatchSizeAuto || c.DynamicBatching.PreferredBatchSizesAuto)
}

// Instances is the instances block: how many sessions run batches in
// parallel and with which ONNX Runtime settings. A plain value, safe for
// concurrent reads.
type Instances struct {
	// Count is the number of batches executed in parallel. [1], 1..MaxInstanceCount.
	Count int `yaml:"count"`
	// Provider is ProviderCPU (the default) or ProviderCUDA.
	Provider string `yaml:"provider"`
	// DeviceID is the GPU ordinal for ProviderCUDA. [0], >= 0.
	DeviceID int `yaml:"device_id"`
	// IntraOpThreads is ONNX Runtime's thread count inside one operator;
	// 0 (the default) lets the server divide the CPUs it may use among
	// the versions it loads. 0..MaxThreads, and with InterOpThreads at most
	// MaxModelThreads over all instances.
	IntraOpThreads int `yaml:"intra_op_threads"`
	// InterOpThreads is ONNX Runtime's thread count across operators;
	// 0 (the default) lets ONNX Runtime choose.
	InterOpThreads int `yaml:"inter_op_threads"`
	// GraphOptimization is one of the GraphOpt* levels. [GraphOptAll]
	GraphOptimization string `yaml:"graph_optimization"`
	// AllowSpinning, when set, says whether ONNX Runtime's intra-op
	// threads spin while waiting for work (ONNX Runtime's
	// session.intra_op.allow_spinning): lower latency, CPU burnt while
	// idle. Nil: on while the loaded instances do not outnumber the CPUs,
	// off otherwise. Never changed once parsed.
	AllowSpinning *bool `yaml:"allow_spinning"`
}

// VersionPolicy is the version_policy block: exactly one of its fields is
// set. When the block is absent or empty, Latest is 1. The zero
// VersionPolicy selects nothing and does not validate. A plain value, safe
// for concurrent reads.
type VersionPolicy struct {
	// Latest serves the N highest version numbers found; >= 1 when set.
	Latest int `yaml:"latest,omitempty"`
	// All serves every version found.
	All bool `yaml:"all,omitempty"`
	// Specific serves these versions when they exist; positive and, after
	// ParseConfig, ascending without duplicates.
	Specific []int64 `yaml:"specific,omitempty"`
}

// Traffic is the traffic block, also the body of the traffic API: which
// ready version answers a request that names none. A plain value, safe for
// concurrent reads; Clone before changing a shared one.
type Traffic struct {
	// Split maps version numbers (canonical decimal strings, as YAML and
	// JSON keys are strings) to relative weights. Nil means the newest ready
	// version takes all traffic; when set it is not empty and not all zero.
	Split map[string]int `yaml:"split,omitempty" json:"split,omitempty"`
	// StickyKey names the header, gRPC metadata key or request parameter
	// whose value pins a caller to one arm. Lowercase. [DefaultStickyKey]
	StickyKey string `yaml:"sticky_key" json:"sticky_key"`
	// Shadow mirrors a share of requests to another version; nil for none.
	Shadow *Shadow `yaml:"shadow,omitempty" json:"shadow,omitempty"`
}

// Shadow mirrors a percentage of requests to Version; the mirrored answers
// are discarded. A plain value, safe for concurrent reads.
type Shadow struct {
	// Version receives the mirrored copies; > 0.
	Version int64 `yaml:"version" json:"version"`
	// Percent of requests mirrored, 0..100.
	Percent int `yaml:"percent" json:"percent"`
}

// Warmup is the warmup block. A plain value, safe for concurrent reads.
type Warmup struct {
	// BatchSizes are the batch sizes run once each, in order, before a
	// version turns READY; each in 1..max(MaxBatchSize, 1). Empty: no warmup.
	BatchSizes []int `yaml:"batch_sizes,omitempty"`
	// Dims gives, by input name, the shape without the batch dimension
	// that warmup and the batch size measurement (auto) use for the
	// dimensions the model leaves open, as Triton's model_warmup dims do;
	// an input it does not name gets 1 for each open dimension. For a
	// model without a batch dimension it is the whole shape. Each
	// dimension >= 1.
	Dims map[string][]int64 `yaml:"dims,omitempty"`
}

// NoFileConfig returns the Config of a model without config.yaml, as
// Triton's auto-complete would: max_batch_size auto with dynamic batching,
// so a model whose every input and output has a dynamic first dimension is
// batched at the size measured fastest, and any other runs unbatched.
func NoFileConfig() Config {
	c := DefaultConfig()
	c.MaxBatchSize, c.MaxBatchSizeAuto = AutoMaxBatchSize, true
	db := defaultDynamicBatching()
	c.DynamicBatching = &db
	return c
}

// DefaultConfig returns the Config of an empty config.yaml.
func DefaultConfig() Config {
	return Config{
		Instances: Instances{
			Count:             1,
			Provider:          ProviderCPU,
			GraphOptimization: GraphOptAll,
		},
		VersionPolicy: VersionPolicy{Latest: 1},
	}
}

func defaultDynamicBatching() DynamicBatching {
	return DynamicBatching{
		MaxQueueDelay:  DefaultMaxQueueDelay,
		MaxQueueSize:   DefaultMaxQueueSize,
		DefaultTimeout: DefaultQueueTimeout,
	}
}

// Clone returns a deep copy of c, so a caller may change it (for example
// to apply an override) without touching a Config another goroutine reads.
func (c Config) Clone() Config {
	out := c
	if c.DynamicBatching != nil {
		db := *c.DynamicBatching
		db.PreferredBatchSizes = slices.Clone(db.PreferredBatchSizes)
		out.DynamicBatching = &db
	}
	out.VersionPolicy.Specific = slices.Clone(c.VersionPolicy.Specific)
	if c.PayloadLog != nil {
		pl := c.PayloadLog.Clone()
		out.PayloadLog = &pl
	}
	if c.Traffic != nil {
		t := c.Traffic.Clone()
		out.Traffic = &t
	}
	out.Warmup.BatchSizes = slices.Clone(c.Warmup.BatchSizes)
	if c.Rollout != nil {
		r := c.Rollout.Clone()
		out.Rollout = &r
	}
	if c.SequenceBatching != nil {
		sb := *c.SequenceBatching
		sb.State = slices.Clone(sb.State)
		out.SequenceBatching = &sb
	}
	if c.Check != nil {
		b := *c.Check
		out.Check = &b
	}
	if c.Monitoring != nil {
		mon := *c.Monitoring
		out.Monitoring = &mon
	}
	if c.Drift != nil {
		d := *c.Drift
		d.Features = maps.Clone(d.Features)
		out.Drift = &d
	}
	if c.Validation != nil {
		v := *c.Validation
		v.Ranges = maps.Clone(v.Ranges)
		out.Validation = &v
	}
	if c.Warmup.Dims != nil {
		out.Warmup.Dims = make(map[string][]int64, len(c.Warmup.Dims))
		for k, v := range c.Warmup.Dims {
			out.Warmup.Dims[k] = slices.Clone(v)
		}
	}
	return out
}

// Clone returns a deep copy of t.
func (t Traffic) Clone() Traffic {
	out := t
	out.Split = maps.Clone(t.Split)
	if t.Shadow != nil {
		s := *t.Shadow
		out.Shadow = &s
	}
	return out
}

// Select returns the versions of available that p serves, ascending and
// without duplicates: the Latest highest, All of them, or those of Specific
// that are available. available need not be sorted.
func (p VersionPolicy) Select(available []int64) []int64 {
	have := slices.Clone(available)
	slices.Sort(have)
	have = slices.Compact(have)
	switch {
	case p.All:
		return have
	case len(p.Specific) > 0:
		var out []int64
		for _, v := range have {
			if slices.Contains(p.Specific, v) {
				out = append(out, v)
			}
		}
		return out
	case p.Latest > 0:
		if len(have) > p.Latest {
			have = have[len(have)-p.Latest:]
		}
		return have
	default:
		return nil
	}
}

// FieldError is one problem in a config, naming the field it is about.
// It wraps ErrInvalidConfig. It is not modified after it is returned, so it
// is safe for concurrent reads.
type FieldError struct {
	// Field is the dotted path of the field, such as
	// "dynamic_batching.max_queue_size"; empty for the document as a whole.
	Field string
	// Line is the 1-based line in the YAML text, 0 when not known (a Config
	// built in code).
	Line int
	// Msg says what is wrong, such as "must be > 0, got -1".
	Msg string
}

// Error returns "field: message (line N)".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Unwrap returns ErrInvalidConfig.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// fieldErrors reports every problem found at once, so an operator fixes a
// config in one round instead of one field per restart.
type fieldErrors []*FieldError

func (es fieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (es fieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// checker collects FieldErrors; lines, when set, adds the YAML line of a
// field to the errors about it.
type checker struct {
	errs  fieldErrors
	lines map[string]int
}

func (c *checker) addf(field, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Field: field, Line: c.lines[field], Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	switch len(c.errs) {
	case 0:
		return nil
	case 1:
		return c.errs[0]
	default:
		return c.errs
	}
}

// Validate reports every impossible value in c, each as a FieldError
// wrapping ErrInvalidConfig; nil when c can be served. ParseConfig calls it;
// callers that change a Config (such as API overrides) call it again.
func (c *Config) Validate() error {
	var ch checker
	c.validate(&ch)
	return ch.err()
}

func (c *Config) validate(ch *checker) {
	if c.MaxBatchSize < 0 || c.MaxBatchSize > MaxBatchSizeLimit {
		ch.addf("max_batch_size", "must be in 0..%d, got %d", MaxBatchSizeLimit, c.MaxBatchSize)
	}
	if c.MaxBatchSizeAuto && c.MaxBatchSize != AutoMaxBatchSize {
		ch.addf("max_batch_size", "auto means %d, got %d", AutoMaxBatchSize, c.MaxBatchSize)
	}
	if db := c.DynamicBatching; db != nil {
		if c.MaxBatchSize <= 0 {
			ch.addf("dynamic_batching", "needs max_batch_size > 0: a model without a batch dimension cannot be batched")
		}
		switch db.Dispatch {
		case "", DispatchImmediate, DispatchWait:
		default:
			ch.addf("dynamic_batching.dispatch", "must be %q or %q, got %q", DispatchImmediate, DispatchWait, db.Dispatch)
		}
		if db.TuningTime < 0 || db.TuningTime > MaxTuningTime {
			ch.addf("dynamic_batching.tuning_time", "must be in 0s..%s, got %s", MaxTuningTime, db.TuningTime)
		}
		if db.PreferredBatchSizesAuto && len(db.PreferredBatchSizes) > 0 {
			ch.addf("dynamic_batching.preferred_batch_sizes", "auto cannot be combined with a list")
		}
		if db.MaxQueueDelay < 0 || db.MaxQueueDelay > MaxQueueDelayLimit {
			ch.addf("dynamic_batching.max_queue_delay", "must be in 0s..%s, got %s", MaxQueueDelayLimit, db.MaxQueueDelay)
		}
		for i, n := range db.PreferredBatchSizes {
			field := fmt.Sprintf("dynamic_batching.preferred_batch_sizes[%d]", i)
			switch {
			case n < 1 || n > c.MaxBatchSize:
				ch.addf(field, "must be in 1..max_batch_size (%d), got %d", c.MaxBatchSize, n)
			case slices.Contains(db.PreferredBatchSizes[:i], n):
				ch.addf(field, "duplicate batch size %d", n)
			}
		}
		switch {
		case db.MaxQueueSize <= 0:
			ch.addf("dynamic_batching.max_queue_size", "must be > 0, got %d", db.MaxQueueSize)
		case db.MaxQueueSize > MaxQueueSizeLimit:
			ch.addf("dynamic_batching.max_queue_size", "must be at most %d, got %d", MaxQueueSizeLimit, db.MaxQueueSize)
		}
		if db.DefaultTimeout <= 0 {
			ch.addf("dynamic_batching.default_timeout", "must be > 0, got %s", db.DefaultTimeout)
		}
	}

	in := c.Instances
	if in.Count < 1 || in.Count > MaxInstanceCount {
		ch.addf("instances.count", "must be in 1..%d, got %d", MaxInstanceCount, in.Count)
	}
	if in.Provider != ProviderCPU && in.Provider != ProviderCUDA {
		ch.addf("instances.provider", "must be %q or %q, got %q", ProviderCPU, ProviderCUDA, in.Provider)
	}
	if in.DeviceID < 0 {
		ch.addf("instances.device_id", "must be >= 0, got %d", in.DeviceID)
	}
	if in.IntraOpThreads < 0 || in.IntraOpThreads > MaxThreads {
		ch.addf("instances.intra_op_threads", "must be in 0..%d, got %d", MaxThreads, in.IntraOpThreads)
	}
	if in.InterOpThreads < 0 || in.InterOpThreads > MaxThreads {
		ch.addf("instances.inter_op_threads", "must be in 0..%d, got %d", MaxThreads, in.InterOpThreads)
	}
	if threads := in.Count * (in.IntraOpThreads + in.InterOpThreads); in.Count <= MaxInstanceCount &&
		in.IntraOpThreads <= MaxThreads && in.InterOpThreads <= MaxThreads && threads > MaxModelThreads {
		ch.addf("instances", "count × (intra_op_threads + inter_op_threads) must be at most %d, got %d", MaxModelThreads, threads)
	}
	switch in.GraphOptimization {
	case GraphOptDisable, GraphOptBasic, GraphOptExtended, GraphOptAll:
	default:
		ch.addf("instances.graph_optimization", "must be one of %s, %s, %s, %s, got %q",
			GraphOptDisable, GraphOptBasic, GraphOptExtended, GraphOptAll, in.GraphOptimization)
	}

	c.VersionPolicy.validate(ch)
	if c.PayloadLog != nil {
		c.PayloadLog.validate(ch)
	}
	if c.Traffic != nil {
		c.Traffic.validate(ch, "traffic.")
	}
	if c.Rollout != nil {
		c.Rollout.validate(ch, "rollout.")
	}
	if c.SequenceBatching != nil {
		c.SequenceBatching.validate(ch, c.MaxBatchSize)
	}
	if c.Drift != nil {
		c.Drift.validate(ch)
	}
	if c.Validation != nil {
		c.Validation.validate(ch)
	}

	if c.Monitoring != nil {
		c.Monitoring.validate(ch)
	}

	maxWarm := max(c.MaxBatchSize, 1)
	for i, n := range c.Warmup.BatchSizes {
		if n < 1 || n > maxWarm {
			ch.addf(fmt.Sprintf("warmup.batch_sizes[%d]", i), "must be in 1..%d (max_batch_size, or 1 without batching), got %d", maxWarm, n)
		}
	}
	if b := c.Check; b != nil {
		if b.Batch < 1 || b.Batch > maxWarm {
			ch.addf("check.batch", "must be in 1..%d (max_batch_size, or 1 without batching), got %d", maxWarm, b.Batch)
		}
		if b.P99 <= 0 {
			ch.addf("check.p99", "must be > 0, got %s", b.P99)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Warmup.Dims)) {
		for i, d := range c.Warmup.Dims[name] {
			if d < 1 {
				ch.addf(fmt.Sprintf("warmup.dims[%q][%d]", name, i), "must be >= 1, got %d", d)
			}
		}
	}
}

func (p *VersionPolicy) validate(ch *checker) {
	var set []string
	if p.Latest != 0 {
		set = append(set, "latest")
	}
	if p.All {
		set = append(set, "all")
	}
	if p.Specific != nil {
		set = append(set, "specific")
	}
	switch len(set) {
	case 0:
		ch.addf("version_policy", "set one of latest, all, specific")
	case 1:
	default:
		ch.addf("version_policy", "set only one of latest, all, specific, got %s", strings.Join(set, ", "))
	}
	if p.Latest < 0 {
		ch.addf("version_policy.latest", "must be >= 1, got %d", p.Latest)
	}
	if p.Specific != nil && len(p.Specific) == 0 {
		ch.addf("version_policy.specific", "must list at least one version")
	}
	for i, v := range p.Specific {
		field := fmt.Sprintf("version_policy.specific[%d]", i)
		switch {
		case v < 1:
			ch.addf(field, "must be a version number >= 1, got %d", v)
		case slices.Contains(p.Specific[:i], v):
			ch.addf(field, "duplicate version %d", v)
		}
	}
}

// ValidateTraffic reports every impossible value in t the way Validate does,
// with field paths relative to the traffic block ("split", "shadow.percent"),
// so the traffic API and config.yaml accept exactly the same blocks.
func ValidateTraffic(t Traffic) error {
	var ch checker
	t.validate(&ch, "")
	return ch.err()
}

func (t *Traffic) validate(ch *checker, prefix string) {
	if t.Split != nil {
		if len(t.Split) == 0 {
			ch.addf(prefix+"split", "must name at least one version (leave split out to send all traffic to the newest ready version)")
		}
		total, bad := 0, false
		for _, key := range slices.Sorted(maps.Keys(t.Split)) {
			w := t.Split[key]
			field := fmt.Sprintf("%ssplit[%q]", prefix, key)
			if _, ok := ParseVersion(key); !ok {
				ch.addf(field, "key must be a version number (a positive integer without sign or leading zeros)")
			}
			if w < 0 || w > MaxTrafficWeight {
				ch.addf(field, "weight must be in 0..%d, got %d", MaxTrafficWeight, w)
				bad = true
				continue
			}
			total += w
		}
		if len(t.Split) > 0 && total == 0 && !bad {
			ch.addf(prefix+"split", "weights must not all be 0")
		}
	}
	if !validStickyKey(t.StickyKey) {
		ch.addf(prefix+"sticky_key", "must be 1..128 of a-z, 0-9, '-', '_', '.' (it is also a gRPC metadata key), got %q", t.StickyKey)
	}
	if s := t.Shadow; s != nil {
		if s.Version < 1 {
			ch.addf(prefix+"shadow.version", "must be a version number >= 1, got %d", s.Version)
		}
		if s.Percent < 0 || s.Percent > 100 {
			ch.addf(prefix+"shadow.percent", "must be in 0..100, got %d", s.Percent)
		}
	}
}

func validStickyKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ParseVersion parses a version number as it appears in a folder name or a
// traffic.split key: a positive decimal int64 without sign or leading zeros.
func ParseVersion(s string) (int64, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// validate checks what the block alone can tell; whether its inputs and
// outputs exist, and the batch axis against their rank, is checked against
// the model when a version loads.
func (sb *SequenceBatching) validate(ch *checker, maxBatch int) {
	if maxBatch < 1 {
		ch.addf("max_batch_size", "must be >= 1 with sequence_batching (the most sequences one run holds), got %d", maxBatch)
	}
	if sb.MaxSequenceIdle <= 0 {
		ch.addf("sequence_batching.max_sequence_idle", "must be > 0, got %v", sb.MaxSequenceIdle)
	}
	if sb.MaxSequences < 1 || sb.MaxSequences > MaxSequencesLimit {
		ch.addf("sequence_batching.max_sequences", "must be in 1..%d, got %d", MaxSequencesLimit, sb.MaxSequences)
	}
	if len(sb.State) == 0 {
		ch.addf("sequence_batching.state", "must list at least one state (input, output)")
	}
	inputs, outputs := map[string]bool{}, map[string]bool{}
	for i, st := range sb.State {
		f := fmt.Sprintf("sequence_batching.state[%d]", i)
		if st.Input == "" {
			ch.addf(f+".input", "must name a model input")
		} else if inputs[st.Input] {
			ch.addf(f+".input", "input %q is already a state", st.Input)
		}
		if st.Output == "" {
			ch.addf(f+".output", "must name a model output")
		} else if outputs[st.Output] {
			ch.addf(f+".output", "output %q is already a state", st.Output)
		}
		inputs[st.Input], outputs[st.Output] = true, true
		if st.BatchAxis < 0 {
			ch.addf(f+".batch_axis", "must be >= 0, got %d", st.BatchAxis)
		}
		if st.Initial != StateInitialZeros {
			ch.addf(f+".initial", "must be %q, got %q", StateInitialZeros, st.Initial)
		}
	}
}
