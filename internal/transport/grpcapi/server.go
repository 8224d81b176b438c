package grpcapi

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Inference is the serving core's request path as the gRPC front end uses
// it; *serving.Server implements it. Both methods must be safe for
// concurrent use, look the model up once, and return errors that wrap the
// serving and tensor sentinels (so transport.Status can classify them) and
// carry the canonical labels (serving.Labels). Infer must honour ctx and
// return once it has answered; it must not keep the request's tensors
// afterwards.
type Inference interface {
	Infer(ctx context.Context, req *serving.Request) (*serving.Response, error)
	// Refuse records a request the front end answered with err before
	// Infer, and returns err labelled.
	Refuse(req *serving.Request, err error) error
}

// Models is health and metadata. Safe for concurrent use.
type Models interface {
	Live() bool
	Ready() bool
	ModelReady(name, version string) (bool, error)
	ModelMetadata(name, version string) (serving.ModelMetadata, error)
	Statistics(model, version string) ([]serving.VersionStats, error)
}

// Repository is the repository extension's management calls. Safe for
// concurrent use.
type Repository interface {
	Index() []serving.IndexEntry
	LoadModel(ctx context.Context, name string, override []byte) error
	UnloadModel(name string) error
}

// Backends are the three parts of the serving core the front end uses,
// and the model-quality loop.
type Backends struct {
	Inference  Inference
	Models     Models
	Repository Repository
	// Quality, when not nil, is served as onnxserve.v1.ModelQuality.
	Quality Quality
}

// BackendsOf returns b as all three parts; *serving.Server is one.
func BackendsOf(b interface {
	Inference
	Models
	Repository
}) Backends {
	return Backends{Inference: b, Models: b, Repository: b}
}

var _ = BackendsOf((*serving.Server)(nil))

// Defaults of Config.
const (
	// DefaultMaxMsgSize bounds a received or sent message, in bytes: room
	// for large raw tensors, far from what would exhaust memory.
	DefaultMaxMsgSize = 64 << 20
	// DefaultMaxConcurrentStreams bounds the concurrent calls of one
	// connection.
	DefaultMaxConcurrentStreams = 1024
	// DefaultStreamDepth is how many requests of one ModelStreamInfer stream
	// run at once.
	DefaultStreamDepth = 32
	// DefaultHealthWatchInterval is how often a health Watch re-checks.
	DefaultHealthWatchInterval = time.Second
	// DefaultConnectionTimeout bounds a new connection's handshakes.
	DefaultConnectionTimeout = 20 * time.Second
	// DefaultMaxConnectionAge is how long a connection lives before the
	// server asks the client, with an HTTP/2 GOAWAY, to open a new one for
	// its next calls (gRPC adds ±10% jitter). A client behind a plain
	// Kubernetes Service then spreads over the pods the autoscaler adds
	// within minutes; the calls in flight finish on the old connection.
	DefaultMaxConnectionAge = 5 * time.Minute
	// DefaultKeepaliveTime is how long a connection may stay silent before
	// the server pings it.
	DefaultKeepaliveTime = time.Minute
	// DefaultKeepaliveTimeout is how long the server waits for the answer
	// to its ping before it drops the connection.
	DefaultKeepaliveTimeout = 20 * time.Second
	// DefaultKeepaliveMinTime is the shortest interval between client
	// pings the server accepts; a client pinging faster is sent a GOAWAY
	// ("too_many_pings") and disconnected.
	DefaultKeepaliveMinTime = 10 * time.Second
	// Forever, as a duration of Config.Keepalive, turns that bound off:
	// as MaxConnectionAge, connections are never aged out; as
	// MaxConnectionAgeGrace, in-flight calls are never cut.
	Forever = time.Duration(math.MaxInt64)
)

// maxHeaderListSize bounds the metadata of one call, in bytes: tokens and
// routing keys are short, and gRPC's own bound of 16 MiB a stream lets a
// client make the server hold far more than that.
const maxHeaderListSize = 1 << 20

// DefaultExtensions are the protocol extensions ServerMetadata reports when
// Config.Extensions is nil.
var DefaultExtensions = []string{"binary_tensor_data", "model_repository", "statistics", "parameters"}

// ObserveFunc records one finished inference request: the canonical model
// and version labels the serving core answered with ("" for what it does
// not have, or when it failed before a version was chosen), the request id,
// the HTTP-style status of its outcome (200 for success, else
// transport.Status) and its duration from arrival to answer.
type ObserveFunc func(model, version, id string, code int, d time.Duration)

// Config holds the gRPC front end's settings. The zero value is valid: every
// zero field takes its documented default.
type Config struct {
	// Version is the server version ServerMetadata reports ["dev"].
	Version string
	// Extensions are the protocol extensions ServerMetadata reports
	// [DefaultExtensions].
	Extensions []string
	// MaxRecvMsgSize bounds one received message, in bytes
	// [DefaultMaxMsgSize]; a larger one fails with RESOURCE_EXHAUSTED.
	MaxRecvMsgSize int
	// MaxSendMsgSize bounds one sent message, in bytes [DefaultMaxMsgSize].
	MaxSendMsgSize int
	// MaxConcurrentStreams bounds the concurrent calls of one connection
	// [DefaultMaxConcurrentStreams]. HTTP/2 announces it to the client,
	// whose further calls wait for a free stream (bounded by their
	// deadlines) rather than fail.
	MaxConcurrentStreams uint32
	// MaxConnections bounds the connections open at once; on one more,
	// the first call fails with RESOURCE_EXHAUSTED naming the limit and an
	// HTTP/2 GOAWAY closes it. 0: no limit.
	MaxConnections int
	// RecvTimeout bounds receiving a call's request message, from its
	// headers, and a call still receiving when Stop begins is cut off
	// (recvGuard) [DefaultRecvTimeout].
	RecvTimeout time.Duration
	// ConnectionTimeout bounds a new connection's TLS and HTTP/2
	// handshakes, so a client that opens connections and sends nothing
	// cannot hold them [DefaultConnectionTimeout].
	ConnectionTimeout time.Duration
	// TLS, when not nil, makes the server accept TLS connections only; a
	// plaintext client fails its handshake.
	TLS *tls.Config
	// Limits bound the inputs of an inference request, checked while it
	// is decoded; an input over one fails with RESOURCE_EXHAUSTED naming
	// the limit. Zero fields take guard's defaults.
	Limits guard.Limits
	// Budget, when not nil, bounds the bytes of inference requests held
	// at once over all connections, counting what decoding them costs; a
	// request that does not fit is answered RESOURCE_EXHAUSTED before it
	// is decoded (budget.go).
	Budget *guard.Budget
	// InferenceTokens, when not nil, are the bearer tokens ("authorization"
	// metadata) every call needs but health (ServerLive, ServerReady,
	// ModelReady, grpc.health.v1) and the repository RPCs, which keep the
	// management rule; UNAUTHENTICATED otherwise.
	InferenceTokens *guard.Tokens
	// RateLimiter, when not nil, limits each client's inference requests
	// (every request of a stream counts); RESOURCE_EXHAUSTED beyond it.
	// Clients are told apart by token when InferenceTokens is set, else by
	// IP address.
	RateLimiter *guard.RateLimiter
	// Scrub removes host paths from status messages and repository index
	// reasons sent to clients; logs keep them.
	Scrub guard.PathScrubber
	// Keepalive is how the server pings idle connections and ages
	// connections out; each zero field takes its default: Time
	// [DefaultKeepaliveTime], Timeout [DefaultKeepaliveTimeout],
	// MaxConnectionAge [DefaultMaxConnectionAge; negative: Forever], MaxConnectionAgeGrace
	// [Forever: a call in flight when the connection reaches its age is
	// never cut], MaxConnectionIdle [Forever]. Forever turns a bound off.
	Keepalive keepalive.ServerParameters
	// KeepalivePolicy is what the server demands of client pings. The zero
	// value allows a ping every DefaultKeepaliveMinTime, also on a
	// connection without calls; a client pinging faster is sent a GOAWAY
	// and disconnected.
	KeepalivePolicy keepalive.EnforcementPolicy
	// StreamDepth bounds how many requests of one ModelStreamInfer stream
	// are in flight at once [DefaultStreamDepth]; 1 runs them one after the
	// other. Answers always come back in request order.
	StreamDepth int
	// HealthWatchInterval is how often a health Watch call re-checks the
	// backend for a change [DefaultHealthWatchInterval].
	HealthWatchInterval time.Duration
	// AdminToken, when set, is the bearer token the repository RPCs require
	// in the "authorization" metadata; when empty they are refused
	// (PERMISSION_DENIED) unless AdminAllowLoopback is set.
	AdminToken string
	// AdminAllowLoopback, without an AdminToken, opens the repository RPCs
	// to loopback peers (guard.AuthorizeAdmin says why not in a pod).
	AdminAllowLoopback bool
	// Observe is called exactly once for every finished ModelInfer call and
	// every request of a ModelStreamInfer stream; nil records nothing. It
	// must be safe for concurrent use and quick.
	Observe ObserveFunc
	// ServerOptions are appended to the server's own options (stats
	// handlers, more interceptors); TLS belongs in the TLS field.
	ServerOptions []grpc.ServerOption
}

func (c Config) withDefaults() Config {
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Extensions == nil {
		c.Extensions = DefaultExtensions
	}
	if c.MaxRecvMsgSize <= 0 {
		c.MaxRecvMsgSize = DefaultMaxMsgSize
	}
	if c.MaxSendMsgSize <= 0 {
		c.MaxSendMsgSize = DefaultMaxMsgSize
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	// gRPC itself reads a zero age, grace or idle time as forever.
	if c.Keepalive.Time == 0 {
		c.Keepalive.Time = DefaultKeepaliveTime
	}
	if c.Keepalive.Timeout == 0 {
		c.Keepalive.Timeout = DefaultKeepaliveTimeout
	}
	switch {
	case c.Keepalive.MaxConnectionAge == 0:
		c.Keepalive.MaxConnectionAge = DefaultMaxConnectionAge
	case c.Keepalive.MaxConnectionAge < 10*time.Nanosecond:
		// gRPC's ±10% jitter needs a positive tenth.
		c.Keepalive.MaxConnectionAge = Forever
	}
	if c.KeepalivePolicy == (keepalive.EnforcementPolicy{}) {
		c.KeepalivePolicy = keepalive.EnforcementPolicy{MinTime: DefaultKeepaliveMinTime, PermitWithoutStream: true}
	}
	if c.StreamDepth <= 0 {
		c.StreamDepth = DefaultStreamDepth
	}
	if c.HealthWatchInterval <= 0 {
		c.HealthWatchInterval = DefaultHealthWatchInterval
	}
	if c.ConnectionTimeout <= 0 {
		c.ConnectionTimeout = DefaultConnectionTimeout
	}
	if c.RecvTimeout <= 0 {
		c.RecvTimeout = DefaultRecvTimeout
	}
	c.Limits = c.Limits.WithDefaults()
	if c.Observe == nil {
		c.Observe = func(string, string, string, int, time.Duration) {}
	}
	return c
}

// Server is the gRPC front end. It is safe for concurrent use; Serve runs
// once, Stop may be called from any goroutine.
type Server struct {
	grpc   *grpc.Server
	health *healthService
	log    *zap.Logger
	cfg    Config

	rejectLog guard.RejectLog
	codec     *codec

	quit     chan struct{} // closed when Stop begins
	stopOnce sync.Once
	// guards are the calls still receiving their request message.
	guards recvGuards
}

// New builds the server with the inference, health and reflection services
// registered. log may be nil.
func New(b Backends, cfg Config, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	s := &Server{log: log, cfg: cfg, quit: make(chan struct{}), codec: newCodec()}
	s.codec.charges.budget, s.codec.limits = cfg.Budget, cfg.Limits
	s.health = newHealthService(struct {
		Models
		Repository
	}{b.Models, b.Repository}, cfg.HealthWatchInterval, s.quit)
	svc := &service{inf: b.Inference, models: b.Models, repo: b.Repository, cfg: cfg, log: log, quit: s.quit, health: s.health, codec: s.codec}

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.KeepaliveParams(cfg.Keepalive),
		grpc.KeepaliveEnforcementPolicy(cfg.KeepalivePolicy),
		grpc.ConnectionTimeout(cfg.ConnectionTimeout),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.ForceServerCodecV2(s.codec),
		// A fixed set of goroutines serves the streams instead of a new
		// one each: measured +6 to +8% on simple, +1 to +3% on the
		// classifier and the CNN at concurrency 128 (bench/BATCHING.md).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		// Outermost first: a panic anywhere is recovered, then every
		// status message is scrubbed, then the caller is authenticated;
		// unary calls get the same in one interceptor.
		grpc.UnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.scrubStream, s.authStream, s.recvStream),
		// Tokens are checked as soon as a call's headers arrive, before
		// its message is read (intake.go).
		grpc.InTapHandle(s.tap),
		// Stop returns only once every handler has: the caller may close
		// the backend right after.
		grpc.WaitForHandlers(true),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(append(opts, cfg.ServerOptions...)...)
	inference.RegisterGRPCInferenceServiceServer(s.grpc, svc)
	healthgrpc.RegisterHealthServer(s.grpc, s.health)
	if b.Quality != nil {
		inference.RegisterModelQualityServer(s.grpc, &qualityService{q: b.Quality})
	}
	reflection.Register(s.grpc)
	return s
}

// Serve accepts connections on ln until Stop; it returns nil after Stop,
// also when Stop came first, and the listener's error otherwise. It applies
// Config.MaxConnections and waits out a shortage of descriptors
// (guard.RetryAccept).
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.RecvTimeout > 0 {
		served, reaped := make(chan struct{}), make(chan struct{})
		go func() { defer close(reaped); s.reapRecv(served) }()
		defer func() { close(served); <-reaped }()
	}
	err := s.grpc.Serve(guard.LimitListener(guard.RetryAccept(ln, s.log), s.cfg.MaxConnections, s.rejectConn))
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil // stopped before it began serving: a shutdown, not a failure
	}
	return err
}

// Stop shuts the server down gracefully: health turns NOT_SERVING, no new
// call is accepted, open ModelStreamInfer streams end after answering the
// requests already read, and Stop waits for running calls. When ctx ends
// first, the remaining calls are cancelled and connections closed at once.
func (s *Server) Stop(ctx context.Context) {
	s.SetNotServing()
	s.stopOnce.Do(func() { close(s.quit) })
	// Calls still receiving their message are cut off now rather than
	// holding the graceful stop; Serve's reaper does the same on quit, but
	// a server that never served has none.
	s.guards.cutOff(time.Time{}, true, errRecvShutdown)
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("gRPC graceful stop timed out; closing the remaining connections", zap.Error(ctx.Err()))
		s.grpc.Stop()
		<-done
	}
}

// SetNotServing turns the health status of the server and of every model to
// NOT_SERVING for good, and ServerReady to false: the first step of
// shutdown, taken while calls are still served so load balancers notice.
func (s *Server) SetNotServing() { s.health.setNotServing() }

// unary wraps every unary call: outermost, panic recovery and the release
// of the call's receive buffer; inside them, status messages scrubbed of
// host paths; innermost, authentication. One interceptor where a chain of
// three would cost grpc's per-call closures.
func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, panicError(s.log, info.FullMethod, p)
		}
		// This runs for every decoded call, whoever answered it. A success
		// means the serving core ran the call to the end, so nothing reads
		// its inputs any more.
		if r, ok := req.(*inference.ModelInferRequest); ok {
			s.codec.release(r, err == nil)
		}
	}()
	// The message is in: its receive guard has done its work.
	stopRecvGuard(s, ctx)
	ctx, err = s.authenticate(ctx, info.FullMethod)
	if err == nil {
		err = s.codec.decodeError(req)
		retryLater(ctx, err)
	}
	if err == nil {
		resp, err = h(ctx, req)
	}
	return resp, s.scrub(err)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError(s.log, info.FullMethod, p)
		}
	}()
	return h(srv, ss)
}

// panicError logs a recovered panic with its stack and returns the INTERNAL
// status the caller gets; the message does not leak the panic's details.
func panicError(log *zap.Logger, where string, p any) error {
	log.Error("panic in gRPC handler", zap.String("method", where), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
	return status.Error(codes.Internal, "internal error: the server failed while handling this request")
}
