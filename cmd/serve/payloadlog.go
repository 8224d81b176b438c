package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/payloadlog"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
)

// payloadLogOptions are the flags of the payload log's sinks. Which
// requests are logged is per model, in config.yaml's payload_log block.
type payloadLogOptions struct {
	dir       string
	maxBytes  int64
	maxAge    time.Duration
	retention time.Duration
	url       string
	caFile    string
	namespace string
	source    string
	queue     int
}

func (p *payloadLogOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&p.dir, "payload-log-dir", "", "write sampled requests and responses (config.yaml payload_log) to rotating JSON-lines files in this folder, gzipped when rotated, created 0600")
	fs.Int64Var(&p.maxBytes, "payload-log-max-bytes", payloadlog.DefaultMaxBytes, "rotate a payload log file before it passes this many bytes")
	fs.DurationVar(&p.maxAge, "payload-log-max-age", payloadlog.DefaultMaxAge, "rotate a payload log file once it is this old")
	fs.DurationVar(&p.retention, "payload-log-retention", 0, "delete rotated payload log files last written longer ago than this; 0 keeps them all")
	fs.StringVar(&p.url, "payload-log-url", "", "send sampled requests and responses as CloudEvents (binary mode, KServe's logger attributes) to this http:// or https:// receiver")
	fs.StringVar(&p.caFile, "payload-log-ca-file", "", "PEM certificate authorities of an https --payload-log-url receiver (default the system's)")
	fs.StringVar(&p.namespace, "payload-log-namespace", "", "ce-namespace of payload events (default $POD_NAMESPACE, else the pod's service account namespace)")
	fs.StringVar(&p.source, "payload-log-source", "", "ce-source of payload events (default http://HOSTNAME:HTTP-PORT/)")
	fs.IntVar(&p.queue, "payload-log-queue", payloadlog.DefaultQueueSize, "events each payload log sink holds while it is slow or down; beyond it they are dropped, counted")
}

func (p *payloadLogOptions) validate() error {
	if p.maxBytes <= 0 {
		return fmt.Errorf("--payload-log-max-bytes: want > 0, got %d", p.maxBytes)
	}
	if p.maxAge <= 0 {
		return fmt.Errorf("--payload-log-max-age: want > 0, got %v", p.maxAge)
	}
	if p.retention < 0 {
		return fmt.Errorf("--payload-log-retention: want >= 0, got %v", p.retention)
	}
	if p.queue <= 0 {
		return fmt.Errorf("--payload-log-queue: want > 0, got %d", p.queue)
	}
	if p.caFile != "" && p.url == "" {
		return errors.New("--payload-log-ca-file needs --payload-log-url")
	}
	return nil
}

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// newPayloadLog builds the payload log from the flags, or returns nil when
// no sink is configured. A URL that does not parse, an unreadable CA file
// or an unwritable directory is an error naming the flag.
func newPayloadLog(p payloadLogOptions, httpPort int, log *zap.Logger, reg prometheus.Registerer) (*payloadlog.Logger, error) {
	if p.dir == "" && p.url == "" {
		return nil, nil
	}
	sinks := map[string]payloadlog.Sink{}
	if p.url != "" {
		s, err := payloadlog.NewHTTPSink(payloadlog.HTTPConfig{URL: p.url, CAFile: p.caFile})
		if err != nil {
			return nil, fmt.Errorf("--payload-log-url: %w", err)
		}
		sinks["http"] = s
	}
	if p.dir != "" {
		s, err := payloadlog.NewFileSink(payloadlog.FileConfig{Dir: p.dir, MaxBytes: p.maxBytes, MaxAge: p.maxAge, Retention: p.retention}, log)
		if err != nil {
			return nil, fmt.Errorf("--payload-log-dir: %w", err)
		}
		sinks["file"] = s
	}
	ns := p.namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	src := p.source
	if src == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		src = "http://" + net.JoinHostPort(host, strconv.Itoa(httpPort)) + "/"
	}
	return payloadlog.New(payloadlog.Config{Source: src, Namespace: ns, QueueSize: p.queue}, sinks, log, reg)
}

// payloadPolicy converts a model's payload_log block (validated by
// repository) to the payload log's policy; nil logs nothing.
func payloadPolicy(cfg *repository.Config) *payloadlog.Policy {
	if cfg == nil || cfg.PayloadLog == nil {
		return nil
	}
	mode, err := payloadlog.ParseMode(cfg.PayloadLog.Mode)
	if err != nil {
		return nil
	}
	return &payloadlog.Policy{Sample: cfg.PayloadLog.Sample, Mode: mode, Redact: cfg.PayloadLog.Redact}
}

// registerPayloadLog makes pl a tap of srv.
func registerPayloadLog(srv *serving.Server, pl *payloadlog.Logger) error {
	if pl == nil {
		return nil
	}
	return serving.AddTap(srv, "payloadlog", 0, serving.Tap[*payloadlog.Entry](pl))
}

// closePayloadLog flushes the sinks within ctx; the serving core's Close,
// which drains the tap, comes first.
func closePayloadLog(ctx context.Context, pl *payloadlog.Logger) error {
	if pl == nil {
		return nil
	}
	return pl.Close(ctx)
}
