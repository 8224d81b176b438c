package main

import (
	"errors"
	"flag"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/keepalive"

	"github.com/onnxserve/onnxserve/internal/rollout"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport/grpcapi"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// options are the command-line settings. Every port may be 0 (a free port,
// logged at startup).
type options struct {
	modelRepository string
	httpAddr        string
	grpcAddr        string
	metricsAddr     string
	httpPort        int
	grpcPort        int
	metricsPort     int
	onnxruntimeLib  string
	logLevel        string
	logFormat       string

	controlMode  string
	loadModels   stringList
	pollInterval time.Duration
	settle       time.Duration
	// strictReadiness is Triton's --strict-readiness: false counts a
	// model that cannot load as settled for readiness.
	strictReadiness bool

	shutdownDelay time.Duration
	drainTimeout  time.Duration

	maxRequestBody  int
	maxGRPCRecv     int
	maxGRPCSend     int
	grpcAlive       grpcKeepalive
	adminTokenFile  string
	adminLoopback   bool
	histogramBounds string
	pprof           bool
	// gcPercent is the Go collector's target (debug.SetGCPercent); 0 means
	// the flag was not given.
	gcPercent int
	// stateDir holds the prediction store of the model-quality loop;
	// stateMaxBytes bounds it.
	stateDir      string
	stateMaxBytes int64

	sec securityOptions

	plog payloadLogOptions
	// maxInflightBytes is the memory budget of requests in flight
	// (--max-inflight-bytes; memory.go); 0 for none.
	maxInflightBytes int64
	// rolloutStateDir holds the rollout state files; "" keeps each beside
	// its model's config.yaml. rolloutTick is how often rollouts are judged.
	rolloutStateDir string
	rolloutTick     time.Duration
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("onnxserve", flag.ContinueOnError)
	fs.StringVar(&o.modelRepository, "model-repository", "models", "model repository folder (one sub-folder per model)")
	fs.StringVar(&o.httpAddr, "http-address", "", "HTTP listen host (default all interfaces)")
	fs.StringVar(&o.grpcAddr, "grpc-address", "", "gRPC listen host (default all interfaces)")
	fs.StringVar(&o.metricsAddr, "metrics-address", "", "metrics listen host (default all interfaces)")
	fs.IntVar(&o.httpPort, "http-port", 8000, "HTTP (KServe v2 REST) port; 0 picks a free port")
	fs.IntVar(&o.grpcPort, "grpc-port", 8001, "gRPC port; 0 picks a free port")
	fs.IntVar(&o.metricsPort, "metrics-port", 8002, "Prometheus /metrics port; 0 picks a free port")
	fs.StringVar(&o.onnxruntimeLib, "onnxruntime-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, else the copy `make lib` caches)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&o.controlMode, "model-control-mode", "poll", "poll: serve what the repository folder holds and follow its changes; explicit: load only --load-model names and API calls")
	fs.Var(&o.loadModels, "load-model", "model to load at startup (repeatable; explicit mode); readiness waits for these")
	fs.BoolVar(&o.strictReadiness, "strict-readiness", true, "true: ready only when every startup model serves a version; false: ready once the front ends are up and every model with a loadable version serves it (broken models stay UNAVAILABLE)")
	fs.DurationVar(&o.pollInterval, "repository-poll-interval", 10*time.Second, "full rescan interval of the repository in poll mode (file events are followed at once)")
	fs.DurationVar(&o.settle, "repository-settle", 500*time.Millisecond, "a model file must stay unchanged this long before it is loaded")
	fs.StringVar(&o.rolloutStateDir, "rollout-state-dir", "", "folder of the rollout state files (<model>.rollout.json); default: each model's folder, as .rollout.json beside its config.yaml")
	fs.DurationVar(&o.rolloutTick, "rollout-tick", rollout.DefaultTick, "how often running rollouts are judged")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM: time readiness is false while requests are still served")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "after the shutdown delay: longest wait for in-flight and queued requests")
	fs.IntVar(&o.maxRequestBody, "max-request-body-size", 64<<20, "largest HTTP request body in bytes")
	fs.IntVar(&o.maxGRPCRecv, "grpc-max-recv-msg-size", 64<<20, "largest gRPC message received, in bytes")
	fs.IntVar(&o.maxGRPCSend, "grpc-max-send-msg-size", 64<<20, "largest gRPC message sent, in bytes")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "file holding the bearer token management calls (repository, traffic, PUT /log-level) need; without it they are refused, unless --admin-allow-loopback")
	fs.BoolVar(&o.adminLoopback, "admin-allow-loopback", false, "without --admin-token-file, accept management calls from loopback callers; never behind a sidecar (Istio, Knative), which forwards every client from loopback")
	fs.StringVar(&o.histogramBounds, "histogram-buckets", "", "latency histogram upper bounds in seconds, comma separated (default 100us to 10s)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the metrics port; keep that port off untrusted networks")
	fs.IntVar(&o.gcPercent, "gc-percent", 0, "Go garbage collector target, as GOGC: heap growth in percent of the live heap before a collection, -1 turns it off (default $GOGC, else 400)")
	fs.Int64Var(&o.maxInflightBytes, guard.LimitInflightBytes, defaultMemoryLimit().inflightBytes(),
		"memory budget in bytes for the requests in flight over both front ends (bodies as they arrive, gRPC messages with what decoding them costs); a request that does not fit is answered 429 / RESOURCE_EXHAUSTED with Retry-After; 0 for no budget (default: a quarter of the memory limit, from the cgroup's limit, else GOMEMLIMIT, else physical memory; at least 64 MiB)")
	o.grpcAlive.register(fs)
	fs.StringVar(&o.stateDir, "state-dir", "state", "folder of the prediction store of models with a monitoring block (created if missing; one server per folder)")
	fs.Int64Var(&o.stateMaxBytes, "state-max-bytes", 1<<30, "bound on the prediction store's data in bytes; beyond it the oldest predictions are evicted")
	o.sec.register(fs)
	o.plog.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch serving.ControlMode(o.controlMode) {
	case serving.ModePoll, serving.ModeExplicit:
	default:
		return nil, fmt.Errorf("--model-control-mode: want poll or explicit, got %q", o.controlMode)
	}
	if len(o.loadModels) > 0 && o.controlMode != string(serving.ModeExplicit) {
		return nil, errors.New("--load-model needs --model-control-mode explicit")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--http-port", o.httpPort}, {"--grpc-port", o.grpcPort}, {"--metrics-port", o.metricsPort}} {
		if p.v < 0 || p.v > 65535 {
			return nil, fmt.Errorf("%s: %d is not a port", p.name, p.v)
		}
	}
	if o.logFormat != "json" && o.logFormat != "console" {
		return nil, fmt.Errorf("--log-format: want json or console, got %q", o.logFormat)
	}
	if o.rolloutTick <= 0 {
		return nil, errors.New("--rollout-tick must be > 0")
	}
	if o.shutdownDelay < 0 || o.drainTimeout <= 0 || o.pollInterval <= 0 || o.settle <= 0 {
		return nil, errors.New("--shutdown-delay must be >= 0; --drain-timeout, --repository-poll-interval and --repository-settle must be > 0")
	}
	if o.gcPercent < -1 {
		return nil, fmt.Errorf("--gc-percent: want a percentage > 0, or -1 for off; got %d", o.gcPercent)
	}
	if o.stateDir == "" || o.stateMaxBytes <= 0 {
		return nil, errors.New("--state-dir must be set and --state-max-bytes must be > 0")
	}
	if o.maxRequestBody <= 0 || o.maxGRPCRecv <= 0 || o.maxGRPCSend <= 0 {
		return nil, errors.New("message size limits must be > 0")
	}
	if o.maxInflightBytes < 0 {
		return nil, fmt.Errorf("--%s must be >= 0", guard.LimitInflightBytes)
	}
	if err := o.grpcAlive.validate(); err != nil {
		return nil, err
	}
	if err := o.sec.validate(); err != nil {
		return nil, err
	}
	if err := o.plog.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// defaultGCPercent is the collector target when neither --gc-percent nor
// GOGC names one. The server's live Go heap is small (model weights live in
// ONNX Runtime's memory) while it allocates per request, so Go's default of
// 100 collects many times a second under load, each time scanning every
// connection's goroutine stack; 400 trades a few tens of MiB of heap for
// roughly a third of the server's CPU per request (bench/RESULTS.md).
const defaultGCPercent = 400

// applyGC sets the collector target and reports the one in force, and where
// it came from. GOMEMLIMIT, read by the Go runtime itself, still caps the
// heap whatever the target.
func (o *options) applyGC(getenv func(string) string) (percent int, source string) {
	switch {
	case o.gcPercent != 0:
		debug.SetGCPercent(o.gcPercent)
		return o.gcPercent, "--gc-percent"
	case getenv("GOGC") != "":
		// The runtime has read it already; SetGCPercent reports it back.
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, "GOGC"
	default:
		debug.SetGCPercent(defaultGCPercent)
		return defaultGCPercent, "default"
	}
}

// defaultBuckets spans 100µs to 10s, the range of one inference request.
var defaultBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func (o *options) buckets() ([]float64, error) {
	if o.histogramBounds == "" {
		return defaultBuckets, nil
	}
	var out []float64
	for _, f := range strings.Split(o.histogramBounds, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || (len(out) > 0 && v <= out[len(out)-1]) {
			return nil, fmt.Errorf("--histogram-buckets: %q is not an increasing list of positive seconds", o.histogramBounds)
		}
		out = append(out, v)
	}
	return out, nil
}

// readToken reads the admin token file: one token, blank lines and lines
// starting with '#' aside. Tokens never come from argv, where any local
// user could read them.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	tokens, err := readTokens(path)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	if len(tokens) != 1 {
		// Taking the whole file as one token would lock every caller out.
		return "", fmt.Errorf("--admin-token-file: %s holds %d lines of tokens; the admin token is one line", path, len(tokens))
	}
	return tokens[0], nil
}

// grpcKeepalive are the flags of gRPC connection ageing and keepalive.
type grpcKeepalive struct {
	maxAge, maxAgeGrace time.Duration
	time, timeout       time.Duration
	minTime             time.Duration
}

func (k *grpcKeepalive) register(fs *flag.FlagSet) {
	fs.DurationVar(&k.maxAge, "grpc-max-connection-age", grpcapi.DefaultMaxConnectionAge, "age (±10% jitter) at which a gRPC connection is sent a GOAWAY so that its client reconnects, reaching pods added since; calls in flight finish first; 0 for never")
	fs.DurationVar(&k.maxAgeGrace, "grpc-max-connection-age-grace", 0, "after --grpc-max-connection-age, longest wait for the connection's calls in flight before it is closed under them; 0 for no limit (no call is cut)")
	fs.DurationVar(&k.time, "grpc-keepalive-time", grpcapi.DefaultKeepaliveTime, "silence on a gRPC connection after which the server pings the client")
	fs.DurationVar(&k.timeout, "grpc-keepalive-timeout", grpcapi.DefaultKeepaliveTimeout, "longest wait for the answer to the server's ping before the connection is dropped")
	fs.DurationVar(&k.minTime, "grpc-keepalive-min-time", grpcapi.DefaultKeepaliveMinTime, "shortest interval between client pings the server accepts (also without calls); a client pinging faster gets GOAWAY too_many_pings")
}

// minConnectionAge keeps ageing from turning into a reconnect storm.
const minConnectionAge = time.Second

func (k *grpcKeepalive) validate() error {
	if k.maxAge != 0 && k.maxAge < minConnectionAge {
		return fmt.Errorf("--grpc-max-connection-age: want 0 (never) or at least %v, got %v", minConnectionAge, k.maxAge)
	}
	if k.maxAgeGrace < 0 {
		return errors.New("--grpc-max-connection-age-grace must be >= 0")
	}
	if k.time <= 0 || k.timeout <= 0 || k.minTime <= 0 {
		return errors.New("--grpc-keepalive-time, --grpc-keepalive-timeout and --grpc-keepalive-min-time must be > 0")
	}
	return nil
}

// apply sets the gRPC front end's keepalive settings; 0 flags mean forever.
func (k *grpcKeepalive) apply(c *grpcapi.Config) {
	forever := func(d time.Duration) time.Duration {
		if d == 0 {
			return grpcapi.Forever
		}
		return d
	}
	c.Keepalive = keepalive.ServerParameters{
		Time:                  k.time,
		Timeout:               k.timeout,
		MaxConnectionAge:      forever(k.maxAge),
		MaxConnectionAgeGrace: forever(k.maxAgeGrace),
	}
	c.KeepalivePolicy = keepalive.EnforcementPolicy{MinTime: k.minTime, PermitWithoutStream: true}
}
