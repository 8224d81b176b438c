package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/drift"
	"github.com/onnxserve/onnxserve/internal/payloadlog"
	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/rollout"
	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/grpcapi"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi"
)

// version is the server's build version, reported by GET /v2.
var version = "0.1.0"

func main() {
	os.Exit(dispatch(commands, os.Args[1:], os.Stdout, os.Stderr))
}

// serveMain is the serve command: parse the flags, run the server until
// SIGTERM or SIGINT, shut down in order. It returns the exit status.
func serveMain(args []string, _, _ io.Writer) int {
	o, err := parseOptions(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "onnxserve:", err)
		return 2
	}
	log, level, err := newLogger(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "onnxserve:", err)
		return 2
	}
	gc, gcFrom := o.applyGC(os.Getenv)
	log.Info("garbage collector", zap.Int("gc_percent", gc), zap.String("from", gcFrom))
	mem := defaultMemoryLimit()
	log.Info("memory", zap.Int64("limit", mem.bytes), zap.String("limit_from", mem.source),
		zap.Int64("go_memory_limit", applyGoMemoryLimit(mem, o.maxInflightBytes, os.Getenv)), zap.Int64(guard.LimitInflightBytes, o.maxInflightBytes))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := newApp(o, log, level)
	if err == nil {
		err = a.run(ctx)
	}
	if err != nil {
		log.Error("onnxserve stopped", zap.Error(err))
		_ = log.Sync()
		// One plain line too, so the cause is readable without a JSON parser.
		fmt.Fprintln(os.Stderr, "onnxserve:", err)
		return 1
	}
	_ = log.Sync()
	return 0
}

func newLogger(o *options) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(o.logLevel)
	if err != nil {
		return nil, level, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = level
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	if o.logFormat == "console" {
		cfg.Encoding = "console"
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	log, err := cfg.Build()
	return log, level, err
}

// app is one running server: its listeners, front ends and serving core.
type app struct {
	o     *options
	log   *zap.Logger
	level zap.AtomicLevel
	reg   *prometheus.Registry
	srv   *serving.Server
	sec   *security
	// quality is the model-quality loop, a tap on srv.
	quality *quality.Monitor
	drift   *drift.Hub

	httpLn, grpcLn, metricsLn net.Listener
	http                      *httpapi.Server
	grpc                      *grpcapi.Server
	metrics                   *http.Server
	startup                   []string
	// ortShutdown destroys the ONNX Runtime environment (runtime.Shutdown;
	// tests observe it).
	ortShutdown func() error
	// threads divides the CPUs among the sessions.
	threads *runtime.ThreadBudget
	// plog is the payload log; nil without a sink.
	plog *payloadlog.Logger
	// rollouts runs progressive delivery.
	rollouts *rollout.Manager
}

// newApp loads ONNX Runtime, builds every component and opens the
// listeners; nothing is served until run.
func newApp(o *options, log *zap.Logger, level zap.AtomicLevel) (a *app, err error) {
	lib, err := runtime.ResolveLibrary(o.onnxruntimeLib)
	if err != nil {
		return nil, err
	}
	ortVersion, err := runtime.Init(lib)
	if err != nil {
		return nil, err
	}
	log.Info("onnx runtime loaded", zap.String("library", lib), zap.String("version", ortVersion))
	defer func() {
		if err != nil {
			_ = runtime.Shutdown()
		}
	}()
	buckets, err := o.buckets()
	if err != nil {
		return nil, err
	}
	token, err := readToken(o.adminTokenFile)
	if err != nil {
		return nil, err
	}
	sec, err := newSecurity(o, token, log)
	if err != nil {
		return nil, err
	}
	a = &app{o: o, log: log, level: level, reg: prometheus.NewRegistry(), sec: sec, ortShutdown: runtime.Shutdown,
		threads: runtime.NewThreadBudget(runtime.AvailableCPUs())}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bm, err := batcher.NewMetrics(a.reg, buckets)
	if err != nil {
		return nil, err
	}
	sm, err := serving.NewMetrics(a.reg)
	if err != nil {
		return nil, err
	}
	if a.plog, err = newPayloadLog(o.plog, o.httpPort, log.Named("payloadlog"), a.reg); err != nil {
		return nil, err
	}
	pl := a.plog
	defer func() {
		if err != nil {
			_ = closePayloadLog(context.Background(), pl)
		}
	}()
	var obs *transport.Observer
	a.drift = drift.NewHub(log.Named("drift"), a.reg)
	a.startup = o.loadModels
	if o.controlMode == string(serving.ModePoll) {
		snap, err := repository.Scan(o.modelRepository)
		if err != nil {
			return nil, fmt.Errorf("--model-repository: %w", err)
		}
		for _, m := range snap.Models {
			a.startup = append(a.startup, m.Name)
		}
		a.planThreads(snap)
	}
	a.srv = serving.New(&ortLoader{threads: a.threads, log: log.Named("runtime")}, serving.Config{
		DrainTimeout:  o.drainTimeout,
		StartupModels: a.startup,
		Root:          o.modelRepository,
		Mode:          serving.ControlMode(o.controlMode),
		Status:        func(err error) int { _, code := transport.Status(err); return code },
		OnRelease: func(model, version string) {
			obs.ForgetVersion(model, version)
			a.drift.Release(model, version)
			if a.quality != nil {
				a.quality.ForgetVersion(model, version)
			}
		},
		OnConfig: func(model string, cfg *repository.Config) {
			if a.plog != nil {
				a.plog.SetPolicy(model, payloadPolicy(cfg))
			}
		},
		OnNewVersion: func(model, candidate, baseline string, p repository.Rollout) {
			a.rollouts.StartLater(model, candidate, baseline, policyOf(p))
		},

		// --strict-readiness=false: a broken model stays UNAVAILABLE
		// without keeping the server out of its Service.
		LenientReadiness: !o.strictReadiness,
	}, log, sm, bm)
	a.srv.SetVersionHook(a.drift)
	if err := serving.AddTap(a.srv, drift.TapName, 0, serving.Tap[*drift.Sample](a.drift)); err != nil {
		return nil, err
	}
	if err := registerPayloadLog(a.srv, a.plog); err != nil {
		return nil, err
	}
	if obs, err = transport.NewObserver(a.reg, buckets, log.Named("access")); err != nil {
		return nil, err
	}
	mon, err := quality.New(quality.Config{StateDir: o.stateDir, MaxBytes: o.stateMaxBytes,
		Resolve: newQualitySpecs(a.srv, o.modelRepository).resolve}, log.Named("quality"), a.reg)
	if err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	// A failure below returns a nil app: close the store through mon.
	defer func() {
		if err != nil {
			_ = mon.Close()
		}
	}()
	a.quality = mon
	if err = serving.AddTap(a.srv, "quality", 0, a.quality); err != nil {
		return nil, err
	}
	hcfg := httpapi.Config{
		MaxRequestBodySize: o.maxRequestBody,
		AdminToken:         token,
		AdminAllowLoopback: o.adminLoopback,
		Version:            version,
		Observe: func(model, ver, id string, code int, d time.Duration) {
			obs.Observe(transport.ProtocolHTTP, model, ver, id, code, d)
		},
		Drift: a.drift,
	}
	sec.http(&hcfg)
	qb := qualityBackend(a.quality, a.plog)
	budget, err := newBudget(o.maxInflightBytes, a.reg)
	if err != nil {
		return nil, err
	}
	hcfg.Budget = budget
	if a.rollouts, err = a.newRollouts(qualityAccuracy{a.quality}, driftSignal{a.drift}); err != nil {
		return nil, err
	}
	hb := httpapi.BackendsOf(a.srv)
	hb.Quality = qb
	hb.Rollouts = rolloutAPI{m: a.rollouts, srv: a.srv, root: o.modelRepository}
	a.http = httpapi.New(hb, hcfg, log.Named("http"))

	gcfg := grpcapi.Config{
		Version:            version,
		MaxRecvMsgSize:     o.maxGRPCRecv,
		MaxSendMsgSize:     o.maxGRPCSend,
		AdminToken:         token,
		AdminAllowLoopback: o.adminLoopback,
		Observe: func(model, ver, id string, code int, d time.Duration) {
			obs.Observe(transport.ProtocolGRPC, model, ver, id, code, d)
		},
	}
	o.grpcAlive.apply(&gcfg)
	sec.grpc(&gcfg)
	gcfg.Budget = budget
	gb := grpcapi.BackendsOf(a.srv)
	gb.Quality = qb
	a.grpc = grpcapi.New(gb, gcfg, log.Named("grpc"))

	if a.httpLn, err = listen(o.httpAddr, o.httpPort); err != nil {
		return nil, fmt.Errorf("--http-port: %w", err)
	}
	if a.grpcLn, err = listen(o.grpcAddr, o.grpcPort); err != nil {
		a.closeListeners()
		return nil, fmt.Errorf("--grpc-port: %w", err)
	}
	if a.metricsLn, err = listen(o.metricsAddr, o.metricsPort); err != nil {
		a.closeListeners()
		return nil, fmt.Errorf("--metrics-port: %w", err)
	}
	a.metricsLn = sec.metricsListener(guard.RetryAccept(a.metricsLn, log.Named("metrics")))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.Handle("/log-level", sec.guardWrites(level))
	if o.pprof {
		// Profiles share the metrics port, which operators already keep
		// on a trusted network; off by default, as they expose internals.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// Failed handshakes and broken scrapes are the client's business: debug.
	errLog, err := zap.NewStdLogAt(log.Named("metrics"), zap.DebugLevel)
	if err != nil {
		a.closeListeners()
		return nil, err
	}
	a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: o.sec.readHeaderTimeout, IdleTimeout: o.sec.idleTimeout, ErrorLog: errLog,
		ReadTimeout: o.sec.readHeaderTimeout + o.sec.readTimeout, WriteTimeout: o.sec.writeTimeout}
	log.Info("listening",
		zap.String("http", a.httpLn.Addr().String()),
		zap.String("grpc", a.grpcLn.Addr().String()),
		zap.String("metrics", a.metricsLn.Addr().String()),
		zap.Int(guard.LimitConnections, o.sec.maxConnections))
	return a, nil
}

func listen(host string, port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

func (a *app) closeListeners() {
	for _, ln := range []net.Listener{a.httpLn, a.grpcLn, a.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// run serves until ctx is cancelled, then shuts down in order: readiness
// false, the shutdown delay, front ends stopped gracefully, batchers
// drained, sessions and the ONNX Runtime environment destroyed.
func (a *app) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.http.Serve(a.httpLn) })
	g.Go(func() error { return a.grpc.Serve(a.grpcLn) })
	g.Go(func() error {
		if err := a.metrics.Serve(a.metricsLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return a.watch(gctx) })
	g.Go(func() error { return a.rollouts.Run(gctx) })
	g.Go(func() error { a.sec.runReload(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		return a.shutdown()
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// watch loads the startup models, then in poll mode follows the repository.
func (a *app) watch(ctx context.Context) error {
	if a.o.controlMode == string(serving.ModeExplicit) {
		for _, name := range a.o.loadModels {
			if err := a.srv.LoadModel(ctx, name, nil); err != nil {
				a.log.Error("startup model failed to load", zap.String("model", name), zap.Error(err))
			}
		}
		a.rollouts.Resume(a.o.loadModels)
		return nil
	}
	snap, err := repository.Scan(a.o.modelRepository)
	if err != nil {
		return err
	}
	a.planThreads(snap)
	a.srv.Apply(ctx, serving.DesiredFromSnapshot(snap))
	a.log.Info("repository loaded", zap.Int("models", len(snap.Models)), zap.Bool("ready", a.srv.Ready()))
	var names []string
	for _, m := range snap.Models {
		names = append(names, m.Name)
	}
	a.rollouts.Resume(names)
	w, err := repository.NewWatcher(a.o.modelRepository, a.o.pollInterval, a.log.Named("repository"),
		repository.WithSettle(a.o.settle), repository.WithPublished(snap))
	if err != nil {
		return err
	}
	w.Run(ctx, func(s repository.Snapshot) {
		a.planThreads(s)
		a.srv.Apply(ctx, serving.DesiredFromSnapshot(s))
	})
	return nil
}

func (a *app) shutdown() error {
	a.log.Info("shutting down: readiness off", zap.Duration("shutdown_delay", a.o.shutdownDelay))
	a.srv.SetNotReady()
	a.grpc.SetNotServing()
	a.http.Drain()
	time.Sleep(a.o.shutdownDelay)
	ctx, cancel := context.WithTimeout(context.Background(), a.o.drainTimeout)
	defer cancel()
	var errs []error
	// Both front ends stop together: no new requests, in-flight ones finish.
	httpDone := make(chan error, 1)
	go func() { httpDone <- a.http.Shutdown(ctx) }()
	a.grpc.Stop(ctx)
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := a.closeServing(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := closePayloadLog(ctx, a.plog); err != nil {
		errs = append(errs, err)
	}
	if err := a.metrics.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("metrics shutdown: %w", err))
	}
	a.log.Info("shutdown complete")
	return errors.Join(errs...)
}

// closeServing drains and closes every version, then destroys the ONNX
// Runtime environment, but only once every session is closed: sessions
// still running past the drain timeout would otherwise run on a destroyed
// environment. Then the environment is left for the process exit to free.
func (a *app) closeServing(ctx context.Context) error {
	err := a.srv.Close(ctx)
	// The taps stopped inside Close; what they kept is committed now.
	if a.quality != nil {
		if qerr := a.quality.Close(); qerr != nil {
			a.log.Error("prediction store", zap.Error(qerr))
		}
	}
	if err != nil {
		a.log.Error("sessions still open after the drain timeout; ONNX Runtime environment left in place", zap.Error(err))
		return err
	}
	return a.ortShutdown()
}
