package repository

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// designExample is the config.yaml example of the design document.
const designExample = `max_batch_size: 8            # [0] 0 = the model has no batch dimension; no batching
dynamic_batching:            # absent = no batching
  max_queue_delay: 500us     # longest a request waits for companions
  preferred_batch_sizes: [4, 8]
  max_queue_size: 1024       # beyond it: 429 / RESOURCE_EXHAUSTED
  default_timeout: 5s        # queue deadline when the client sets none
instances:
  count: 1                   # batches executed in parallel
  provider: cpu              # cpu | cuda
  device_id: 0
  intra_op_threads: 0        # 0 = ONNX Runtime's default
  inter_op_threads: 0
  graph_optimization: all    # disable | basic | extended | all
version_policy:
  latest: 1                  # or  all: true  or  specific: [1, 3]
traffic:                     # which ready version answers a request with no version
  split: {"1": 90, "2": 10}  # weights; absent = newest ready version takes all
  sticky_key: x-routing-key  # header / gRPC metadata / request parameter that pins a caller to one arm
  shadow: {version: 3, percent: 25}  # mirrored copies; their answers are discarded
warmup:
  batch_sizes: [1, 8]        # run before a version turns READY
`

func TestParseConfigGood(t *testing.T) {
	withDefaults := func(f func(c *Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		yaml string
		want Config
	}{
		{
			name: "design example",
			yaml: designExample,
			want: Config{
				MaxBatchSize: 8,
				DynamicBatching: &DynamicBatching{
					MaxQueueDelay:       500 * time.Microsecond,
					PreferredBatchSizes: []int{4, 8},
					MaxQueueSize:        1024,
					DefaultTimeout:      5 * time.Second,
				},
				Instances:     Instances{Count: 1, Provider: "cpu", GraphOptimization: "all"},
				VersionPolicy: VersionPolicy{Latest: 1},
				Traffic: &Traffic{
					Split:     map[string]int{"1": 90, "2": 10},
					StickyKey: "x-routing-key",
					Shadow:    &Shadow{Version: 3, Percent: 25},
				},
				Warmup: Warmup{BatchSizes: []int{1, 8}},
			},
		},
		{name: "empty file", yaml: "", want: DefaultConfig()},
		{
			name: "spinning off",
			yaml: "instances: {allow_spinning: false}\n",
			want: withDefaults(func(c *Config) { c.Instances.AllowSpinning = new(bool) }),
		},
		{
			name: "spinning on",
			yaml: "instances: {count: 2, allow_spinning: true}\n",
			want: withDefaults(func(c *Config) {
				on := true
				c.Instances.Count, c.Instances.AllowSpinning = 2, &on
			}),
		},
		{
			name: "latency budget",
			yaml: "max_batch_size: 8\ncheck: {batch: 8, p99: 20ms}\n",
			want: withDefaults(func(c *Config) { c.MaxBatchSize = 8; c.Check = &CheckBudget{Batch: 8, P99: 20 * time.Millisecond} }),
		},
		{
			name: "latency budget batch defaults to 1",
			yaml: "check: {p99: 5ms}\n",
			want: withDefaults(func(c *Config) { c.Check = &CheckBudget{Batch: 1, P99: 5 * time.Millisecond} }),
		},
		{name: "comments only", yaml: "# nothing here\n", want: DefaultConfig()},
		{name: "empty document", yaml: "---\n", want: DefaultConfig()},
		{name: "empty mapping", yaml: "{}", want: DefaultConfig()},
		{name: "null value counts as absent", yaml: "dynamic_batching:\nmax_batch_size:\n", want: DefaultConfig()},
		{
			name: "empty dynamic_batching block takes defaults",
			yaml: "max_batch_size: 4\ndynamic_batching: {}\n",
			want: withDefaults(func(c *Config) {
				c.MaxBatchSize = 4
				c.DynamicBatching = &DynamicBatching{MaxQueueDelay: DefaultMaxQueueDelay, MaxQueueSize: DefaultMaxQueueSize, DefaultTimeout: DefaultQueueTimeout}
			}),
		},
		{
			name: "zero queue delay allowed",
			yaml: "max_batch_size: 4\ndynamic_batching: {max_queue_delay: 0s}\n",
			want: withDefaults(func(c *Config) {
				c.MaxBatchSize = 4
				c.DynamicBatching = &DynamicBatching{MaxQueueSize: DefaultMaxQueueSize, DefaultTimeout: DefaultQueueTimeout}
			}),
		},
		{
			name: "partial instances keep other defaults",
			yaml: "instances: {count: 4, provider: cuda, device_id: 1}\n",
			want: withDefaults(func(c *Config) {
				c.Instances = Instances{Count: 4, Provider: "cuda", DeviceID: 1, GraphOptimization: "all"}
			}),
		},
		{name: "empty version_policy is latest 1", yaml: "version_policy: {}\n", want: DefaultConfig()},
		{name: "all false alone is latest 1", yaml: "version_policy: {all: false}\n", want: DefaultConfig()},
		{
			name: "version policy all",
			yaml: "version_policy: {all: true}\n",
			want: withDefaults(func(c *Config) { c.VersionPolicy = VersionPolicy{All: true} }),
		},
		{
			name: "version policy specific sorted",
			yaml: "version_policy:\n  specific: [3, 1]\n",
			want: withDefaults(func(c *Config) { c.VersionPolicy = VersionPolicy{Specific: []int64{1, 3}} }),
		},
		{
			name: "version policy latest 3",
			yaml: "version_policy: {latest: 3}\n",
			want: withDefaults(func(c *Config) { c.VersionPolicy = VersionPolicy{Latest: 3} }),
		},
		{
			name: "preferred sizes sorted",
			yaml: "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [8, 2, 4]}\n",
			want: withDefaults(func(c *Config) {
				c.MaxBatchSize = 8
				c.DynamicBatching = &DynamicBatching{MaxQueueDelay: DefaultMaxQueueDelay, PreferredBatchSizes: []int{2, 4, 8}, MaxQueueSize: DefaultMaxQueueSize, DefaultTimeout: DefaultQueueTimeout}
			}),
		},
		{
			name: "empty traffic block takes default sticky key",
			yaml: "traffic: {}\n",
			want: withDefaults(func(c *Config) { c.Traffic = &Traffic{StickyKey: DefaultStickyKey} }),
		},
		{
			name: "traffic integer keys and uppercase sticky key",
			yaml: "traffic:\n  split: {1: 1, 2: 0}\n  sticky_key: X-User\n",
			want: withDefaults(func(c *Config) {
				c.Traffic = &Traffic{Split: map[string]int{"1": 1, "2": 0}, StickyKey: "x-user"}
			}),
		},
		{
			name: "warmup without batching uses size 1",
			yaml: "warmup: {batch_sizes: [1, 1]}\n",
			want: withDefaults(func(c *Config) { c.Warmup.BatchSizes = []int{1, 1} }),
		},
		{
			name: "anchors and aliases",
			yaml: "max_batch_size: &n 4\nwarmup: {batch_sizes: [*n]}\n",
			want: withDefaults(func(c *Config) { c.MaxBatchSize = 4; c.Warmup.BatchSizes = []int{4} }),
		},
		{
			name: "auto batch sizes, wait dispatch, tuning time",
			yaml: "max_batch_size: auto\ndynamic_batching: {preferred_batch_sizes: auto, dispatch: wait, tuning_time: 2s}\n",
			want: withDefaults(func(c *Config) {
				c.MaxBatchSize, c.MaxBatchSizeAuto = AutoMaxBatchSize, true
				c.DynamicBatching = &DynamicBatching{MaxQueueDelay: DefaultMaxQueueDelay, MaxQueueSize: DefaultMaxQueueSize, DefaultTimeout: DefaultQueueTimeout,
					Dispatch: DispatchWait, PreferredBatchSizesAuto: true, TuningTime: 2 * time.Second}
			}),
		},
		{
			name: "warmup dims",
			yaml: "warmup: {dims: {x: [3, 48, 192]}}\n",
			want: withDefaults(func(c *Config) { c.Warmup.Dims = map[string][]int64{"x": {3, 48, 192}} }),
		},
		{
			name: "immediate dispatch",
			yaml: "max_batch_size: 4\ndynamic_batching: {dispatch: immediate}\n",
			want: withDefaults(func(c *Config) {
				c.MaxBatchSize = 4
				c.DynamicBatching = &DynamicBatching{MaxQueueDelay: DefaultMaxQueueDelay, MaxQueueSize: DefaultMaxQueueSize, DefaultTimeout: DefaultQueueTimeout, Dispatch: DispatchImmediate}
			}),
		},
		{
			name: "hexadecimal integer",
			yaml: "max_batch_size: 0x10\n",
			want: withDefaults(func(c *Config) { c.MaxBatchSize = 16 }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseConfig =\n%+v\nwant\n%+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate of parsed config: %v", err)
			}
		})
	}
}

// fieldErrorsOf returns the FieldErrors err carries.
func fieldErrorsOf(err error) []*FieldError {
	var fe *FieldError
	var fes fieldErrors
	switch {
	case errors.As(err, &fes):
		return fes
	case errors.As(err, &fe):
		return []*FieldError{fe}
	}
	return nil
}

func TestParseConfigBad(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		field string // the FieldError.Field expected among the errors
		msg   string // a substring of that error's message
	}{
		{"negative max_batch_size", "max_batch_size: -1", "max_batch_size", "must be in 0..1048576, got -1"},
		{"max_batch_size above limit", "max_batch_size: 1048577", "max_batch_size", "got 1048577"},
		{"float max_batch_size", "max_batch_size: 8.5", "max_batch_size", `must be an integer, got number "8.5"`},
		{"quoted max_batch_size", `max_batch_size: "8"`, "max_batch_size", "must be an integer, got string"},
		{"huge max_batch_size", "max_batch_size: 99999999999999999999", "max_batch_size", "must be an integer"},
		{"batching without batch size", "dynamic_batching: {}", "dynamic_batching", "needs max_batch_size > 0"},
		{"zero warmup dim", "warmup: {dims: {x: [3, 0]}}", `warmup.dims["x"][1]`, "must be >= 1, got 0"},
		{"warmup dims not a mapping", "warmup: {dims: [3]}", "warmup.dims", "must be a mapping of input name to dimensions"},
		{"unknown dispatch", "max_batch_size: 8\ndynamic_batching: {dispatch: later}", "dynamic_batching.dispatch", `must be "immediate" or "wait", got "later"`},
		{"auto misspelt", "max_batch_size: Auto", "max_batch_size", "must be an integer"},
		{"preferred auto misspelt", "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: automatic}", "dynamic_batching.preferred_batch_sizes", "must be a list"},
		{"tuning time too long", "max_batch_size: 8\ndynamic_batching: {tuning_time: 2m}", "dynamic_batching.tuning_time", "must be in 0s..1m0s, got 2m0s"},
		{"negative tuning time", "max_batch_size: 8\ndynamic_batching: {tuning_time: -1s}", "dynamic_batching.tuning_time", "must be in 0s..1m0s"},
		{"negative queue size", "max_batch_size: 8\ndynamic_batching: {max_queue_size: -1}", "dynamic_batching.max_queue_size", "must be > 0, got -1"},
		{"queue size above limit", "max_batch_size: 8\ndynamic_batching: {max_queue_size: 1048577}", "dynamic_batching.max_queue_size", "must be at most 1048576"},
		{"zero queue size", "max_batch_size: 8\ndynamic_batching: {max_queue_size: 0}", "dynamic_batching.max_queue_size", "must be > 0, got 0"},
		{"negative delay", "max_batch_size: 8\ndynamic_batching: {max_queue_delay: -1ms}", "dynamic_batching.max_queue_delay", "must be in 0s..10s"},
		{"delay too long", "max_batch_size: 8\ndynamic_batching: {max_queue_delay: 11s}", "dynamic_batching.max_queue_delay", "got 11s"},
		{"delay without unit", "max_batch_size: 8\ndynamic_batching: {max_queue_delay: 500}", "dynamic_batching.max_queue_delay", `must be a duration with a unit, such as 500us or 5s, got integer "500"`},
		{"delay not a duration", "max_batch_size: 8\ndynamic_batching: {max_queue_delay: soon}", "dynamic_batching.max_queue_delay", "must be a duration"},
		{"zero default timeout", "max_batch_size: 8\ndynamic_batching: {default_timeout: 0s}", "dynamic_batching.default_timeout", "must be > 0, got 0s"},
		{"negative default timeout", "max_batch_size: 8\ndynamic_batching: {default_timeout: -5s}", "dynamic_batching.default_timeout", "must be > 0, got -5s"},
		{"preferred size zero", "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [0]}", "dynamic_batching.preferred_batch_sizes[0]", "must be in 1..max_batch_size (8), got 0"},
		{"preferred size too big", "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [4, 16]}", "dynamic_batching.preferred_batch_sizes[1]", "got 16"},
		{"preferred size duplicate", "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [4, 4]}", "dynamic_batching.preferred_batch_sizes[1]", "duplicate"},
		{"preferred sizes not a list", "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: 4}", "dynamic_batching.preferred_batch_sizes", "must be a list"},
		{"count zero", "instances: {count: 0}", "instances.count", "must be in 1..64, got 0"},
		{"count too big", "instances: {count: 65}", "instances.count", "got 65"},
		{"unknown provider", "instances: {provider: tpu}", "instances.provider", `got "tpu"`},
		{"provider not a string", "instances: {provider: 1}", "instances.provider", "must be a string"},
		{"negative device", "instances: {device_id: -1}", "instances.device_id", "must be >= 0, got -1"},
		{"spinning as a string", `instances: {allow_spinning: "no"}`, "instances.allow_spinning", "must be true or false"},
		{"spinning as a number", "instances: {allow_spinning: 0}", "instances.allow_spinning", "must be true or false"},
		{"spinning misspelt", "instances: {allow_spin: false}", "instances.allow_spin", "unknown"},
		{"negative intra threads", "instances: {intra_op_threads: -1}", "instances.intra_op_threads", "must be in 0..256"},
		{"intra threads too many", "instances: {intra_op_threads: 100000}", "instances.intra_op_threads", "must be in 0..256, got 100000"},
		{"inter threads too many", "instances: {inter_op_threads: 257}", "instances.inter_op_threads", "got 257"},
		{"threads over all instances", "instances: {count: 64, intra_op_threads: 16, inter_op_threads: 1}", "instances", "at most 1024, got 1088"},
		{"negative inter threads", "instances: {inter_op_threads: -2}", "instances.inter_op_threads", "got -2"},
		{"unknown graph optimization", "instances: {graph_optimization: max}", "instances.graph_optimization", `got "max"`},
		{"instances not a mapping", "instances: [1, 2]", "instances", "must be a mapping, got a list"},
		{"latest zero", "version_policy: {latest: 0}", "version_policy.latest", "must be >= 1, got 0"},
		{"latest negative", "version_policy: {latest: -2}", "version_policy.latest", "must be >= 1, got -2"},
		{"two policies", "version_policy: {latest: 1, all: true}", "version_policy", "set only one of latest, all, specific, got latest, all"},
		{"empty specific", "version_policy: {specific: []}", "version_policy.specific", "at least one"},
		{"specific zero", "version_policy: {specific: [0]}", "version_policy.specific[0]", "got 0"},
		{"specific duplicate", "version_policy: {specific: [2, 2]}", "version_policy.specific[1]", "duplicate"},
		{"all not a boolean", "version_policy: {all: yes}", "version_policy.all", "must be true or false"},
		{"empty split", "traffic: {split: {}}", "traffic.split", "at least one"},
		{"split key leading zero", `traffic: {split: {"01": 1}}`, `traffic.split["01"]`, "key must be a version number"},
		{"split key not a number", `traffic: {split: {a: 1}}`, `traffic.split["a"]`, "key must be a version number"},
		{"split negative weight", `traffic: {split: {"1": -1, "2": 3}}`, `traffic.split["1"]`, "weight must be in 0..1000000, got -1"},
		{"split weight too big", `traffic: {split: {"1": 2000000}}`, `traffic.split["1"]`, "got 2000000"},
		{"split all zero", `traffic: {split: {"1": 0, "2": 0}}`, "traffic.split", "must not all be 0"},
		{"split weight not an integer", `traffic: {split: {"1": lots}}`, `traffic.split["1"]`, "must be an integer"},
		{"split duplicate key", `traffic: {split: {"1": 1, 1: 2}}`, `traffic.split["1"]`, "duplicate key"},
		{"empty sticky key", `traffic: {sticky_key: ""}`, "traffic.sticky_key", `got ""`},
		{"sticky key with space", `traffic: {sticky_key: "a b"}`, "traffic.sticky_key", `got "a b"`},
		{"shadow version zero", "traffic: {shadow: {version: 0, percent: 5}}", "traffic.shadow.version", "got 0"},
		{"shadow percent too big", "traffic: {shadow: {version: 3, percent: 101}}", "traffic.shadow.percent", "must be in 0..100, got 101"},
		{"shadow percent negative", "traffic: {shadow: {version: 3, percent: -1}}", "traffic.shadow.percent", "got -1"},
		{"shadow without version", "traffic: {shadow: {percent: 5}}", "traffic.shadow.version", "required"},
		{"shadow not a mapping", "traffic: {shadow: 3}", "traffic.shadow", "must be a mapping"},
		{"warmup zero", "max_batch_size: 8\nwarmup: {batch_sizes: [0]}", "warmup.batch_sizes[0]", "must be in 1..8"},
		{"warmup above max batch", "max_batch_size: 8\nwarmup: {batch_sizes: [1, 9]}", "warmup.batch_sizes[1]", "got 9"},
		{"warmup batch without batching", "warmup: {batch_sizes: [2]}", "warmup.batch_sizes[0]", "must be in 1..1"},
		{"check without p99", "max_batch_size: 8\ncheck: {batch: 8}", "check.p99", "required"},
		{"check p99 zero", "check: {p99: 0s}", "check.p99", "must be > 0"},
		{"check p99 without unit", "check: {p99: 20}", "check.p99", "a duration with a unit"},
		{"check batch above max batch", "max_batch_size: 8\ncheck: {batch: 9, p99: 20ms}", "check.batch", "got 9"},
		{"check unknown key", "check: {p99: 20ms, p50: 1ms}", "check.p50", "unknown field"},
		{"unknown top-level key", "max_batch: 4", "max_batch", "unknown field"},
		{"unknown nested key", "instances: {cout: 2}", "instances.cout", "unknown field"},
		{"duplicate key", "max_batch_size: 1\nmax_batch_size: 2", "max_batch_size", "duplicate key"},
		{"merge key", "instances:\n  <<: {count: 2}\n", "instances", "merge keys"},
		{"two documents", "max_batch_size: 1\n---\nmax_batch_size: 2\n", "", "more than one YAML document"},
		{"syntax error", "max_batch_size: [", "", "not valid YAML"},
		{"top level list", "- 1\n- 2\n", "", "must be a mapping, got a list"},
		{"top level scalar", "hello", "", `must be a mapping, got string "hello"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil {
				t.Fatal("ParseConfig succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %q does not wrap ErrInvalidConfig", err)
			}
			var found *FieldError
			for _, fe := range fieldErrorsOf(err) {
				if fe.Field == tt.field {
					found = fe
				}
			}
			if found == nil {
				t.Fatalf("error %q names no field %q", err, tt.field)
			}
			if !strings.Contains(found.Msg, tt.msg) {
				t.Errorf("error for %q = %q, want it to contain %q", tt.field, found.Msg, tt.msg)
			}
			if tt.field != "" && !strings.Contains(err.Error(), tt.field+": ") {
				t.Errorf("error text %q does not start a part with %q", err, tt.field+": ")
			}
		})
	}
}

func TestParseConfigExactMessage(t *testing.T) {
	_, err := ParseConfig([]byte("max_batch_size: 8\ndynamic_batching:\n  max_queue_size: -1\n"))
	if got, want := err.Error(), "dynamic_batching.max_queue_size: must be > 0, got -1 (line 3)"; got != want {
		t.Fatalf("error = %q, want %q", got, want)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	_, err := ParseConfig([]byte("max_batch_size: -1\ninstances:\n  count: 0\n  provider: tpu\n"))
	fes := fieldErrorsOf(err)
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Field)
	}
	want := []string{"max_batch_size", "instances.count", "instances.provider"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields = %v, want %v (error %q)", got, want, err)
	}
	if fes[1].Line != 3 || fes[2].Line != 4 {
		t.Errorf("lines = %d, %d, want 3, 4", fes[1].Line, fes[2].Line)
	}
	if !strings.Contains(err.Error(), "; ") {
		t.Errorf("error %q does not join its parts with \"; \"", err)
	}
}

// TestParseConfigRoundTrip marshals a Config with every field set away from
// its default and parses it back: a field the parser does not know fails
// as an unknown key.
func TestParseConfigRoundTrip(t *testing.T) {
	want := Config{
		MaxBatchSize: 16,
		DynamicBatching: &DynamicBatching{
			MaxQueueDelay:       2 * time.Millisecond,
			PreferredBatchSizes: []int{4, 16},
			MaxQueueSize:        7,
			DefaultTimeout:      3 * time.Second,
		},
		Instances:     Instances{Count: 3, Provider: "cuda", DeviceID: 2, IntraOpThreads: 4, InterOpThreads: 5, GraphOptimization: "basic"},
		VersionPolicy: VersionPolicy{Specific: []int64{2, 5}},
		Traffic: &Traffic{
			Split:     map[string]int{"2": 1, "5": 3},
			StickyKey: "x-user",
			Shadow:    &Shadow{Version: 5, Percent: 10},
		},
		Warmup: Warmup{BatchSizes: []int{16, 1}},
	}
	if err := want.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	data, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip =\n%+v\nwant\n%+v\nfrom\n%s", got, want, data)
	}
	for _, p := range []VersionPolicy{{Latest: 2}, {All: true}} {
		c := DefaultConfig()
		c.VersionPolicy = p
		data, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseConfig(data)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of policy %+v = %+v, %v", p, got.VersionPolicy, err)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("zero Config validated")
	} else {
		var fields []string
		for _, fe := range fieldErrorsOf(err) {
			fields = append(fields, fe.Field)
			if fe.Line != 0 {
				t.Errorf("%s: line %d for a Config built in code", fe.Field, fe.Line)
			}
		}
		for _, f := range []string{"instances.count", "instances.provider", "instances.graph_optimization", "version_policy"} {
			if !slices.Contains(fields, f) {
				t.Errorf("zero Config: no error for %s in %v", f, fields)
			}
		}
	}
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	c.VersionPolicy = VersionPolicy{Latest: 1, Specific: []int64{1}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "version_policy: set only one") {
		t.Fatalf("two policies: err = %v", err)
	}
}

func TestValidateTraffic(t *testing.T) {
	tests := []struct {
		name  string
		t     Traffic
		field string // "" for valid
	}{
		{"defaults", Traffic{StickyKey: DefaultStickyKey}, ""},
		{"split", Traffic{Split: map[string]int{"1": 1, "2": 0}, StickyKey: "k"}, ""},
		{"shadow", Traffic{StickyKey: "k", Shadow: &Shadow{Version: 2, Percent: 100}}, ""},
		{"empty sticky key", Traffic{}, "sticky_key"},
		{"uppercase sticky key", Traffic{StickyKey: "X-Key"}, "sticky_key"},
		{"empty split", Traffic{Split: map[string]int{}, StickyKey: "k"}, "split"},
		{"bad split key", Traffic{Split: map[string]int{"+1": 1}, StickyKey: "k"}, `split["+1"]`},
		{"zero split key", Traffic{Split: map[string]int{"0": 1}, StickyKey: "k"}, `split["0"]`},
		{"negative weight", Traffic{Split: map[string]int{"1": -1, "2": 1}, StickyKey: "k"}, `split["1"]`},
		{"all zero", Traffic{Split: map[string]int{"1": 0}, StickyKey: "k"}, "split"},
		{"shadow version", Traffic{StickyKey: "k", Shadow: &Shadow{Version: -1}}, "shadow.version"},
		{"shadow percent", Traffic{StickyKey: "k", Shadow: &Shadow{Version: 1, Percent: 200}}, "shadow.percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTraffic(tt.t)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateTraffic: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ValidateTraffic = %v, want ErrInvalidConfig", err)
			}
			fes := fieldErrorsOf(err)
			if !slices.ContainsFunc(fes, func(fe *FieldError) bool { return fe.Field == tt.field }) {
				t.Fatalf("ValidateTraffic = %q, want an error for %q", err, tt.field)
			}
		})
	}
}

func TestParseTraffic(t *testing.T) {
	got, err := ParseTraffic([]byte(`{"split": {"1": 90, "2": 10}, "sticky_key": "X-User", "shadow": {"version": 3, "percent": 5}}`))
	if err != nil {
		t.Fatalf("ParseTraffic: %v", err)
	}
	want := Traffic{Split: map[string]int{"1": 90, "2": 10}, StickyKey: "x-user", Shadow: &Shadow{Version: 3, Percent: 5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseTraffic = %+v, want %+v", got, want)
	}
	got, err = ParseTraffic(nil)
	if err != nil || !reflect.DeepEqual(got, Traffic{StickyKey: DefaultStickyKey}) {
		t.Fatalf("ParseTraffic(empty) = %+v, %v", got, err)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"split": {"1": "x"}}`, `split["1"]`},
		{`{"split": {"1": 0}}`, "split"},
		{`{"weights": {}}`, "weights"},
		{`{"shadow": {"version": 2}}`, "shadow.percent"},
	} {
		_, err := ParseTraffic([]byte(tc.body))
		if !slices.ContainsFunc(fieldErrorsOf(err), func(fe *FieldError) bool { return fe.Field == tc.field }) {
			t.Errorf("ParseTraffic(%s) = %v, want an error for %q", tc.body, err, tc.field)
		}
	}
}

func TestParseTrafficUpdate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       *Traffic
	}{
		{"split", `{"split": {"1": 90, "2": 10}}`, &Traffic{Split: map[string]int{"1": 90, "2": 10}, StickyKey: DefaultStickyKey}},
		{"null split clears", `{"split": null, "sticky_key": "user"}`, &Traffic{StickyKey: "user"}},
		// Each of these used to parse as the default block, so a PUT
		// wiped the split from config.yaml.
		{"not UTF-8", "\xff\xfe", nil},
		{"null", `null`, nil},
		{"empty object", `{}`, nil},
		{"empty", ``, nil},
		{"no split", `{"sticky_key": "user"}`, nil},
		{"array", `[1, 2]`, nil},
		{"string", `"split"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrafficUpdate([]byte(tc.body))
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ParseTrafficUpdate(%q) = %+v, %v; want ErrInvalidConfig", tc.body, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, *tc.want) {
				t.Fatalf("ParseTrafficUpdate(%q) = %+v, %v; want %+v", tc.body, got, err, *tc.want)
			}
		})
	}
}

func TestConfigClone(t *testing.T) {
	c, err := ParseConfig([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatal("Clone differs from the original")
	}
	d.DynamicBatching.PreferredBatchSizes[0] = 99
	d.Traffic.Split["1"] = 0
	d.Traffic.Shadow.Percent = 99
	d.Warmup.BatchSizes[0] = 99
	d.DynamicBatching.MaxQueueSize = 1
	if c.DynamicBatching.PreferredBatchSizes[0] != 4 || c.Traffic.Split["1"] != 90 ||
		c.Traffic.Shadow.Percent != 25 || c.Warmup.BatchSizes[0] != 1 || c.DynamicBatching.MaxQueueSize != 1024 {
		t.Fatalf("changing the clone changed the original: %+v", c)
	}
}

func TestVersionPolicySelect(t *testing.T) {
	available := []int64{3, 1, 10, 2}
	tests := []struct {
		name string
		p    VersionPolicy
		in   []int64
		want []int64
	}{
		{"latest 1", VersionPolicy{Latest: 1}, available, []int64{10}},
		{"latest 2", VersionPolicy{Latest: 2}, available, []int64{3, 10}},
		{"latest more than available", VersionPolicy{Latest: 9}, available, []int64{1, 2, 3, 10}},
		{"all", VersionPolicy{All: true}, available, []int64{1, 2, 3, 10}},
		{"specific", VersionPolicy{Specific: []int64{10, 1, 7}}, available, []int64{1, 10}},
		{"specific none available", VersionPolicy{Specific: []int64{7}}, available, nil},
		{"nothing available", VersionPolicy{Latest: 1}, nil, nil},
		{"duplicates collapse", VersionPolicy{All: true}, []int64{2, 2, 1}, []int64{1, 2}},
		{"zero policy selects nothing", VersionPolicy{}, available, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := tt.p.Select(in)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Select(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Fatalf("Select changed its argument to %v", in)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1", 1, true},
		{"42", 42, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"0", 0, false},
		{"01", 0, false},
		{"+1", 0, false},
		{"-1", 0, false},
		{"1a", 0, false},
		{"", 0, false},
		{" 1", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseVersion(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseVersion(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file is batching auto", func(t *testing.T) {
		got, err := LoadConfig(filepath.Join(dir, "absent.yaml"))
		if err != nil || !reflect.DeepEqual(got, NoFileConfig()) {
			t.Fatalf("LoadConfig = %+v, %v", got, err)
		}
		if !got.AutoBatch() || got.MaxBatchSize != AutoMaxBatchSize {
			t.Fatalf("config without a file = %+v, want max_batch_size auto with dynamic batching", got)
		}
		if err := got.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("good file", func(t *testing.T) {
		path := filepath.Join(dir, "good.yaml")
		writeFile(t, path, "max_batch_size: 2\n")
		got, err := LoadConfig(path)
		if err != nil || got.MaxBatchSize != 2 {
			t.Fatalf("LoadConfig = %+v, %v", got, err)
		}
	})
	t.Run("bad file names the path", func(t *testing.T) {
		path := filepath.Join(dir, "bad.yaml")
		writeFile(t, path, "instances: {count: 0}\n")
		_, err := LoadConfig(path)
		if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), path+": instances.count: ") {
			t.Fatalf("LoadConfig = %v", err)
		}
	})
	t.Run("oversized file", func(t *testing.T) {
		path := filepath.Join(dir, "big.yaml")
		writeFile(t, path, "#"+strings.Repeat("x", MaxConfigBytes)+"\n")
		_, err := LoadConfig(path)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("LoadConfig = %v", err)
		}
	})
	t.Run("unreadable path", func(t *testing.T) {
		_, err := LoadConfig(dir)
		if err == nil || !strings.HasPrefix(err.Error(), dir+": ") {
			t.Fatalf("LoadConfig(folder) = %v", err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSequenceBatchingConfig(t *testing.T) {
	ok := "max_batch_size: 16\nsequence_batching:\n  state:\n    - {input: state, output: stateN, batch_axis: 1}\n"
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	sb := c.SequenceBatching
	if sb == nil || sb.MaxSequenceIdle != DefaultMaxSequenceIdle || sb.MaxSequences != DefaultMaxSequences || sb.State[0].Initial != StateInitialZeros || sb.State[0].BatchAxis != 1 {
		t.Errorf("parsed %+v", sb)
	}
	bad := []struct{ name, yaml, field string }{
		{"unknown key", "max_batch_size: 4\nsequence_batching: {state: [{input: a, output: b}], idle: 1s}\n", "sequence_batching.idle"},
		{"no states", "max_batch_size: 4\nsequence_batching: {max_sequences: 3}\n", "sequence_batching.state"},
		{"negative axis", "max_batch_size: 4\nsequence_batching: {state: [{input: a, output: b, batch_axis: -1}]}\n", "sequence_batching.state[0].batch_axis"},
		{"initial", "max_batch_size: 4\nsequence_batching: {state: [{input: a, output: b, initial: ones}]}\n", "sequence_batching.state[0].initial"},
		{"missing output", "max_batch_size: 4\nsequence_batching: {state: [{input: a}]}\n", "sequence_batching.state[0].output"},
		{"no batch", "sequence_batching: {state: [{input: a, output: b}]}\n", "max_batch_size"},
		{"idle", "max_batch_size: 4\nsequence_batching: {max_sequence_idle: 0s, state: [{input: a, output: b}]}\n", "sequence_batching.max_sequence_idle"},
		{"too many", "max_batch_size: 4\nsequence_batching: {max_sequences: 0, state: [{input: a, output: b}]}\n", "sequence_batching.max_sequences"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %v does not name %s", err, tc.field)
			}
		})
	}
}
