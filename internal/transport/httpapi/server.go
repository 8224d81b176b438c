package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// Inference is the serving core's request path as the HTTP front end uses
// it; *serving.Server implements it. Both methods must be safe for
// concurrent use, look the model up once, and return errors that carry the
// canonical labels (serving.Labels). Infer must not keep the request's
// tensors after it returns, except that a request abandoned on its deadline
// may still be read by a batch that is running; the front end therefore
// hands over tensors it owns (see decodeInferRequest).
type Inference interface {
	// Infer runs one request and returns its outputs in the requested
	// order, with the model and version that served it.
	Infer(ctx context.Context, req *serving.Request) (*serving.Response, error)
	// Refuse records a request the front end answered with err before
	// Infer, and returns err labelled.
	Refuse(req *serving.Request, err error) error
}

// Models is health and metadata: what probes and clients read about the
// server and its models. Safe for concurrent use.
type Models interface {
	Live() bool
	Ready() bool
	// ModelReady reports whether a model ("" version: any version) can
	// serve; an unknown model or version is an error.
	ModelReady(name, version string) (bool, error)
	// ModelMetadata describes a model version ("": the newest ready one).
	ModelMetadata(name, version string) (serving.ModelMetadata, error)
	Statistics(model, version string) ([]serving.VersionStats, error)
}

// Repository is repository and traffic management. Safe for concurrent
// use.
type Repository interface {
	// Index lists every known model version with its state.
	Index() []serving.IndexEntry
	// LoadModel loads or reloads a model from the repository;
	// configOverride, when not nil, replaces its config.yaml.
	LoadModel(ctx context.Context, name string, configOverride []byte) error
	// UnloadModel retires every version of a model.
	UnloadModel(name string) error
	Traffic(model string) (serving.TrafficView, error)
	PutTraffic(model string, body []byte) error
}

// Backends are the three parts of the serving core the front end uses,
// the model-quality loop and the rollouts.
type Backends struct {
	Inference  Inference
	Models     Models
	Repository Repository
	// Quality serves feedback and quality reports; nil answers those
	// endpoints 404.
	Quality Quality
	// Rollouts, when not nil, serves /v2/models/{m}/rollout; nil answers
	// those paths 404.
	Rollouts Rollouts
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

// Config holds the HTTP front end's settings. The zero value is usable.
type Config struct {
	// MaxRequestBodySize bounds a request body in bytes; a larger one is
	// refused with 413 before it is read. Default 64 MiB.
	MaxRequestBodySize int
	// Limits bound the inputs of an inference request, checked while it
	// is decoded; an input over one is refused with 413 naming the limit.
	// Zero fields take guard's defaults.
	Limits guard.Limits
	// ReadHeaderTimeout bounds the TLS handshake and reading a request's
	// head, from its first byte (a client that trickles its headers is cut
	// off). Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body once its head is read.
	// Default 60s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 60s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request. Default 120s.
	IdleTimeout time.Duration
	// MaxConnections bounds the connections open at once; one more is
	// answered 503 naming the limit and closed. 0: no limit.
	MaxConnections int
	// TLS, when not nil, makes Serve speak HTTPS only; a plaintext client
	// fails its handshake.
	TLS *tls.Config
	// AdminToken, when set, is the bearer token the management API
	// requires; when empty, the management API is closed (403) unless
	// AdminAllowLoopback is set.
	AdminToken string
	// AdminAllowLoopback, without an AdminToken, opens the management API
	// to loopback callers (guard.AuthorizeAdmin says why not in a pod).
	AdminAllowLoopback bool
	// InferenceTokens, when not nil, are the bearer tokens inference and
	// metadata calls need (401 without one); health probes and model
	// readiness stay open, and the management API keeps its own rule.
	InferenceTokens *guard.Tokens
	// Budget, when not nil, bounds the request body bytes held at once
	// over all connections; a body that does not fit is answered 429
	// (inflight.go).
	Budget *guard.Budget
	// RateLimiter, when not nil, limits each client's inference requests
	// (429 beyond it); clients are told apart by token when
	// InferenceTokens is set, else by IP address.
	RateLimiter *guard.RateLimiter
	// Scrub removes host paths from error messages and repository index
	// reasons sent to clients; logs keep them.
	Scrub guard.PathScrubber
	// Version is the build version GET /v2 reports.
	Version string
	// Observe, when not nil, is called once per inference request (a POST
	// to an infer endpoint, whatever its outcome, including a body refused
	// as too large) after its response is built: the canonical model and
	// version labels the serving core answered with ("" for what it does
	// not have, or when the request never reached it), the request id, the
	// HTTP status and the time since the request was read. It runs on the
	// request's goroutine, so it must be quick and safe for concurrent use.
	Observe func(model, version, id string, code int, d time.Duration)
	// Drift, when not nil, answers GET /v2/models/{m}[/versions/{v}]/drift;
	// nil answers 404.
	Drift DriftReporter
}

// Defaults of Config.
const (
	DefaultMaxRequestBodySize = 64 << 20
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultReadTimeout        = 60 * time.Second
	DefaultWriteTimeout       = 60 * time.Second
	DefaultIdleTimeout        = 120 * time.Second
)

// Server is the KServe v2 HTTP front end. It is safe for concurrent use;
// Serve is called once.
type Server struct {
	inf      Inference
	models   Models
	repo     Repository
	rollouts Rollouts
	quality  Quality
	cfg      Config
	log      *zap.Logger
	srv      *fasthttp.Server
	metadata []byte // the GET /v2 document, built once

	rejectLog guard.RejectLog
	conns     *connTracker

	mu      sync.Mutex   // guards the two fields below
	ln      net.Listener // the listener Serve uses, once it runs
	raw     net.Listener // the listener Serve was given
	stopped bool         // Shutdown was called
}

// New returns a Server answering from b. log must not be nil.
func New(b Backends, cfg Config, log *zap.Logger) *Server {
	if cfg.MaxRequestBodySize <= 0 {
		cfg.MaxRequestBodySize = DefaultMaxRequestBodySize
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	s := &Server{inf: b.Inference, models: b.Models, repo: b.Repository, quality: b.Quality, rollouts: b.Rollouts, cfg: cfg, log: log, conns: newConnTracker(cfg.ReadHeaderTimeout + cfg.ReadTimeout + cfg.WriteTimeout)}
	s.metadata = serverMetadata(cfg.Version)
	bodyConfig := fasthttp.RequestConfig{ReadTimeout: cfg.ReadTimeout}
	s.srv = &fasthttp.Server{
		Handler:      s.conns.answering(s.handle),
		ConnState:    s.conns.connState,
		ErrorHandler: s.handleProtocolError,
		Name:         "onnxserve",
		// fasthttp's ReadTimeout runs from a request's first byte (and
		// bounds the TLS handshake); once the head is in, HeaderReceived
		// gives the body its own deadline.
		ReadTimeout:                  cfg.ReadHeaderTimeout,
		HeaderReceived:               s.headerReceived(bodyConfig),
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxRequestBodySize:           cfg.MaxRequestBodySize,
		DisablePreParseMultipartForm: true,
		// Bodies are read by takeBody, in proportion to what arrived.
		StreamRequestBody: true,
		CloseOnShutdown:   true,
		Logger:            fasthttpLogger{log},
	}
	return s
}

// Serve answers requests on ln until Shutdown; it returns nil after a
// Shutdown and the listener's error otherwise. It applies the connection
// limit, waits out a shortage of descriptors (guard.RetryAccept) and, with
// Config.TLS, serves HTTPS.
func (s *Server) Serve(ln net.Listener) error {
	raw := ln
	ln = lingerListener{guard.LimitListener(guard.RetryAccept(ln, s.log), s.cfg.MaxConnections, s.rejectConn), s.conns}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		_ = ln.Close()
		return nil // Shutdown came first: nothing to serve
	}
	s.ln, s.raw = ln, raw
	s.mu.Unlock()
	err := s.srv.Serve(ln)
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return nil
	}
	return err
}

// rejectConn answers a connection over Config.MaxConnections with a 503
// naming the limit.
func (s *Server) rejectConn(c net.Conn) {
	msg := fmt.Sprintf("connection refused: the server already holds its %s limit of %d connections; retry later", guard.LimitConnections, s.cfg.MaxConnections)
	body := appendString([]byte(`{"error":`), msg)
	body = append(body, '}')
	reply := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	s.rejectLog.Warn(s.log, s.cfg.MaxConnections, c.RemoteAddr())
	guard.RejectConn(c, s.cfg.TLS, guard.ReplyAfterRequest([]byte(reply)))
}

// Drain starts the shutdown delay: every answer from now on carries
// Connection: close, so keep-alive clients leave after their current
// request and open a new connection for the next (answered while the
// listener is open, refused once it is closed: never written into a
// connection the server is closing). Requests are still served.
func (s *Server) Drain() { s.conns.draining.Store(true) }

// Shutdown stops accepting connections and waits until the requests in
// flight are answered, or ctx ends. A request still arriving a second into
// shutdown (a stalled upload) is cut off rather than waited for, and
// keep-alive connections are closed only between requests.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	ln, raw := s.ln, s.raw
	s.mu.Unlock()
	s.conns.stopping.Store(true)
	if raw != nil {
		emptyBacklog(raw)
	}
	stopSweep, swept := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swept)
		s.conns.cutStalledUploads(stopSweep)
	}()
	err := s.srv.ShutdownWithContext(ctx)
	close(stopSweep)
	<-swept
	if ln != nil {
		// fasthttp closes only the listeners its Serve has registered; a
		// Serve that has not got that far would otherwise accept forever.
		_ = ln.Close()
	}
	if err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// outcome is what the one observation point of a request learns from the
// handler that answered it.
type outcome struct {
	infer bool // an inference request, which Observe records
	start time.Time
	id    string
	// model and version are the canonical labels the serving core
	// answered with; "" until it did.
	model, version string
	// tokenIndex is the inference token the caller presented, -1 for
	// none; it names the client for the rate limiter.
	tokenIndex int
}

// handle is the fasthttp handler: route, answer, and observe the outcome in
// one place whatever happened, panics included.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	o := outcome{tokenIndex: -1, start: start}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("http handler panicked", zap.Any("panic", r), zap.Stack("stack"),
				zap.ByteString("method", ctx.Method()), zap.ByteString("path", ctx.Path()))
			ctx.Response.Reset()
			writeError(ctx, http.StatusInternalServerError, "internal error")
		}
		if o.infer && s.cfg.Observe != nil {
			s.cfg.Observe(o.model, o.version, o.id, ctx.Response.StatusCode(), time.Since(start))
		}
	}()
	charged, err := s.takeBody(ctx)
	defer s.cfg.Budget.Refund(charged)
	if err != nil {
		s.refuseBody(ctx, err)
		return
	}
	s.route(ctx, &o)
}

// handleProtocolError answers requests fasthttp could not read whole, such
// as one whose body exceeds MaxRequestBodySize; the handler never sees them.
func (s *Server) handleProtocolError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge) && s.unauthenticatedBody(&ctx.Request.Header):
		s.fail(ctx, transport.ErrUnauthenticated) // its body was never read (body.go)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// The body is still on its way: let the client finish sending,
		// so it reads this answer rather than a reset.
		lingerOnClose(ctx.Conn())
		s.fail(ctx, guard.LimitErrorf("request body exceeds the %d-byte limit (%s)", s.cfg.MaxRequestBodySize, guard.LimitRequestBody))
	case errors.Is(err, transport.ErrMemoryBudget):
		s.fail(ctx, err)
	case errors.As(err, &small):
		writeError(ctx, http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(ctx, http.StatusRequestTimeout, "timed out reading the request")
	default:
		writeError(ctx, http.StatusBadRequest, "malformed HTTP request: "+err.Error())
	}
	if model, version, ok := inferTarget(ctx); ok {
		// The request never reached the handler: the serving core still
		// hears of it once, and supplies the labels.
		id := transport.RequestID("", string(ctx.Request.Header.Peek(transport.RequestIDHeader)))
		ctx.Response.Header.Set(transport.RequestIDHeader, id)
		refused := s.inf.Refuse(&serving.Request{Model: model, Version: version, ID: id, Protocol: transport.ProtocolHTTP}, err)
		if s.cfg.Observe != nil {
			model, version = serving.Labels(refused)
			s.cfg.Observe(model, version, id, ctx.Response.StatusCode(), 0)
		}
	}
}

// fail answers with err's status from the transport table and its message.
func (s *Server) fail(ctx *fasthttp.RequestCtx, err error) {
	_, code := transport.Status(err)
	msg := s.cfg.Scrub.Scrub(err.Error())
	switch code {
	case http.StatusUnauthorized:
		msg = "unauthorized" // say nothing about why a credential failed
		ctx.Response.Header.Set("WWW-Authenticate", "Bearer")
	case http.StatusTooManyRequests:
		ctx.Response.Header.Set("Retry-After", "1")
	case http.StatusInternalServerError:
		s.log.Error("request failed", zap.ByteString("method", ctx.Method()), zap.ByteString("path", ctx.Path()), zap.Error(err))
	}
	writeError(ctx, code, msg)
}

// writeError replaces the response with a v2 error document.
func writeError(ctx *fasthttp.RequestCtx, code int, msg string) {
	ctx.SetStatusCode(code)
	ctx.SetContentType(contentJSON)
	body := ctx.Response.SwapBody(nil)[:0]
	body = append(body, `{"error":`...)
	body = appendString(body, msg)
	body = append(body, '}')
	ctx.Response.SwapBody(body)
}

// fasthttpLogger sends fasthttp's own messages, mostly about broken client
// connections, to the debug level.
type fasthttpLogger struct{ log *zap.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if ce := l.log.Check(zap.DebugLevel, "fasthttp"); ce != nil {
		ce.Write(zap.String("message", fmt.Sprintf(format, args...)))
	}
}
