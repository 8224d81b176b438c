package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/grpcapi"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi"
)

// securityOptions are the flags of TLS, authentication and the limits that
// keep one client from taking the server down.
type securityOptions struct {
	tlsCert, tlsKey, tlsClientCA string
	tlsReload                    time.Duration
	metricsTLS                   bool
	inferenceTokenFile           string

	maxTensorElements int64
	maxInputs         int
	maxBytesElement   int64
	maxStreams        uint
	maxConnections    int

	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	grpcConnTimeout   time.Duration

	rateLimit float64
	rateBurst int
}

func (s *securityOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate (chain) file; with --tls-key the HTTP and gRPC ports speak TLS only. Reloaded when it changes")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&s.tlsClientCA, "tls-client-ca", "", "PEM bundle of CAs that client certificates must chain to; makes client certificates required (mutual TLS)")
	fs.DurationVar(&s.tlsReload, "tls-reload-interval", guard.DefaultCertReloadInterval, "how often the TLS files are checked for a change (size and modification time)")
	fs.BoolVar(&s.metricsTLS, "metrics-tls", false, "serve the metrics port with TLS too (same certificate and client CA rule)")
	fs.StringVar(&s.inferenceTokenFile, "inference-token-file", "", "file of bearer tokens, one per line ('#' starts a comment), that inference and metadata calls need; health probes stay open")
	fs.Int64Var(&s.maxTensorElements, guard.LimitTensorElements, guard.DefaultMaxTensorElements, "most elements in one input tensor; beyond it 413 / RESOURCE_EXHAUSTED")
	fs.IntVar(&s.maxInputs, guard.LimitInputs, guard.DefaultMaxInputs, "most inputs in one inference request; beyond it 413 / RESOURCE_EXHAUSTED")
	fs.Int64Var(&s.maxBytesElement, guard.LimitBytesElement, guard.DefaultMaxBytesElement, "longest BYTES element in bytes; beyond it 413 / RESOURCE_EXHAUSTED")
	fs.UintVar(&s.maxStreams, "grpc-max-concurrent-streams", grpcapi.DefaultMaxConcurrentStreams, "most concurrent gRPC calls on one connection; further calls wait for a free stream")
	fs.IntVar(&s.maxConnections, guard.LimitConnections, 10000, "most connections open at once on each of the HTTP and gRPC ports; one more is refused (HTTP 503, HTTP/2 GOAWAY) naming the limit; 0 for no limit")
	fs.DurationVar(&s.readHeaderTimeout, "http-read-header-timeout", httpapi.DefaultReadHeaderTimeout, "longest time for the TLS handshake and a request's head, from its first byte (cuts off clients that trickle headers)")
	fs.DurationVar(&s.readTimeout, "http-read-timeout", httpapi.DefaultReadTimeout, "longest time to read a request body once its head is in")
	fs.DurationVar(&s.writeTimeout, "http-write-timeout", httpapi.DefaultWriteTimeout, "longest time to write a response")
	fs.DurationVar(&s.idleTimeout, "http-idle-timeout", httpapi.DefaultIdleTimeout, "longest time a keep-alive connection waits for its next request")
	fs.DurationVar(&s.grpcConnTimeout, "grpc-connection-timeout", grpcapi.DefaultConnectionTimeout, "longest time for a new gRPC connection's TLS and HTTP/2 handshakes")
	fs.Float64Var(&s.rateLimit, guard.LimitRate, 0, "inference requests per second allowed to each client (by IP, or by token with --inference-token-file); beyond it 429 / RESOURCE_EXHAUSTED; 0 for no limit")
	fs.IntVar(&s.rateBurst, "rate-burst", 0, "requests a client may send at once above --rate-limit (default: --rate-limit rounded up)")
}

func (s *securityOptions) validate() error {
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if s.tlsCert == "" && (s.tlsClientCA != "" || s.metricsTLS) {
		return errors.New("--tls-client-ca and --metrics-tls need --tls-cert and --tls-key")
	}
	if s.tlsReload <= 0 {
		return errors.New("--tls-reload-interval must be > 0")
	}
	if s.maxTensorElements <= 0 || s.maxInputs <= 0 || s.maxBytesElement <= 0 || s.maxStreams == 0 || s.maxStreams > math.MaxUint32 {
		return fmt.Errorf("--%s, --%s, --%s and --grpc-max-concurrent-streams must be > 0", guard.LimitTensorElements, guard.LimitInputs, guard.LimitBytesElement)
	}
	if s.maxConnections < 0 {
		return fmt.Errorf("--%s must be >= 0", guard.LimitConnections)
	}
	if s.readHeaderTimeout <= 0 || s.readTimeout <= 0 || s.writeTimeout <= 0 || s.idleTimeout <= 0 || s.grpcConnTimeout <= 0 {
		return errors.New("--http-read-header-timeout, --http-read-timeout, --http-write-timeout, --http-idle-timeout and --grpc-connection-timeout must be > 0")
	}
	if s.rateLimit < 0 || math.IsNaN(s.rateLimit) || math.IsInf(s.rateLimit, 0) || s.rateBurst < 0 {
		return fmt.Errorf("--%s and --rate-burst must be >= 0", guard.LimitRate)
	}
	if s.rateBurst > 0 && s.rateLimit == 0 {
		return fmt.Errorf("--rate-burst needs --%s", guard.LimitRate)
	}
	return nil
}

// security is what the security flags build, shared by both front ends:
// one rate limiter for both protocols, so a client cannot double its share
// by using both.
type security struct {
	o             securityOptions
	adminToken    string
	adminLoopback bool
	certs         *guard.CertReloader // nil without TLS
	inference     *guard.Tokens       // nil without inference auth
	limiter       *guard.RateLimiter  // nil without a rate limit
	scrub         guard.PathScrubber
}

func newSecurity(o *options, adminToken string, log *zap.Logger) (*security, error) {
	s := &security{o: o.sec, adminToken: adminToken, adminLoopback: o.adminLoopback, scrub: guard.NewPathScrubber(o.modelRepository)}
	if o.sec.tlsCert != "" {
		certs, err := guard.NewCertReloader(o.sec.tlsCert, o.sec.tlsKey, o.sec.tlsClientCA, log.Named("tls"))
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		s.certs = certs
	}
	if o.sec.inferenceTokenFile != "" {
		tokens, err := readTokens(o.sec.inferenceTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--inference-token-file: %w", err)
		}
		s.inference = guard.NewTokens(tokens)
		log.Info("inference calls need a bearer token", zap.Int("tokens", s.inference.Len()))
	}
	if o.sec.rateLimit > 0 {
		burst := o.sec.rateBurst
		if burst == 0 {
			burst = int(math.Ceil(o.sec.rateLimit))
		}
		s.limiter = guard.NewRateLimiter(o.sec.rateLimit, burst, 0)
	}
	return s, nil
}

// http fills in the HTTP front end's security settings.
func (s *security) http(c *httpapi.Config) {
	c.Limits = s.limits()
	c.ReadHeaderTimeout = s.o.readHeaderTimeout
	c.ReadTimeout = s.o.readTimeout
	c.WriteTimeout = s.o.writeTimeout
	c.IdleTimeout = s.o.idleTimeout
	c.MaxConnections = s.o.maxConnections
	c.InferenceTokens = s.inference
	c.RateLimiter = s.limiter
	c.Scrub = s.scrub
	if s.certs != nil {
		c.TLS = s.certs.ServerConfig("http/1.1")
	}
}

// grpc fills in the gRPC front end's security settings.
func (s *security) grpc(c *grpcapi.Config) {
	c.Limits = s.limits()
	c.MaxConcurrentStreams = uint32(s.o.maxStreams)
	c.MaxConnections = s.o.maxConnections
	c.ConnectionTimeout = s.o.grpcConnTimeout
	// A request message gets the time an HTTP request gets for its head and body.
	c.RecvTimeout = s.o.readHeaderTimeout + s.o.readTimeout
	c.InferenceTokens = s.inference
	c.RateLimiter = s.limiter
	c.Scrub = s.scrub
	if s.certs != nil {
		// The gRPC credentials add "h2" to the protocols.
		c.TLS = s.certs.ServerConfig()
	}
}

func (s *security) limits() guard.Limits {
	return guard.Limits{MaxTensorElements: s.o.maxTensorElements, MaxInputs: s.o.maxInputs, MaxBytesElement: s.o.maxBytesElement}
}

// metricsListener wraps the metrics listener in TLS with --metrics-tls.
func (s *security) metricsListener(ln net.Listener) net.Listener {
	if s.certs == nil || !s.o.metricsTLS {
		return ln
	}
	return tls.NewListener(ln, s.certs.ServerConfig("http/1.1"))
}

// runReload follows certificate changes until ctx ends.
func (s *security) runReload(ctx context.Context) {
	if s.certs != nil {
		s.certs.Run(ctx, s.o.tlsReload)
	}
}

// guardWrites lets anyone read h but applies the management API's rule
// (the admin token; without one, loopback only with --admin-allow-loopback,
// else nobody) to every other method: the log-level endpoint changes the
// server.
func (s *security) guardWrites(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			var remote net.Addr
			if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
				remote = a
			}
			if err := guard.AuthorizeAdmin(s.adminToken, s.adminLoopback, r.Header.Get("Authorization"), remote); err != nil {
				_, code := transport.Status(err)
				msg := http.StatusText(code)
				if code == http.StatusForbidden {
					// Say which flag opens it; a 401 says nothing more.
					msg = err.Error()
				}
				http.Error(w, msg, code)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// readTokens reads a token file: one token per line, blank lines and lines
// starting with '#' skipped. Tokens never come from argv, where any local
// user could read them, and are never logged.
func readTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no token", path)
	}
	return out, nil
}
