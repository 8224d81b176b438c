package payloadlog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// HTTPConfig configures the CloudEvents sink.
type HTTPConfig struct {
	// URL receives the events: http or https, with a host.
	URL string
	// CAFile, for an https URL, is a PEM file of the certificate
	// authorities that sign the receiver's certificate; "" trusts the
	// system's.
	CAFile string
	// Timeout bounds one delivery attempt. [5s]
	Timeout time.Duration
	// Retries is how many times a failed delivery is retried (network
	// errors, 429 and 5xx answers; other answers are final). [3]
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one. [100ms]
	Backoff time.Duration
}

// Defaults of HTTPConfig.
const (
	DefaultHTTPTimeout = 5 * time.Second
	DefaultHTTPRetries = 3
	DefaultHTTPBackoff = 100 * time.Millisecond
	maxHTTPBackoff     = 5 * time.Second
)

// HTTPSink posts each event to a CloudEvents receiver in binary content
// mode (attributes as ce- headers, the v2 JSON as the body), as KServe's
// inference logger does. It is used by one goroutine at a time.
type HTTPSink struct {
	cfg    HTTPConfig
	client cloudevents.Client
	tr     *http.Transport
}

// NewHTTPSink checks cfg and returns the sink; a URL that does not parse
// or a CA file that cannot be read is an error here, at startup.
func NewHTTPSink(cfg HTTPConfig) (*HTTPSink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", cfg.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q: want http:// or https:// and a host", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.Retries < 0 {
		return nil, fmt.Errorf("retries: want >= 0, got %d", cfg.Retries)
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultHTTPBackoff
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		if u.Scheme != "https" {
			return nil, fmt.Errorf("CA file %s given for %s, which is not https", cfg.CAFile, cfg.URL)
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	p, err := cloudevents.NewHTTP(cehttp.WithTarget(u.String()), cehttp.WithClient(http.Client{Transport: tr, Timeout: cfg.Timeout}))
	if err != nil {
		return nil, fmt.Errorf("CloudEvents transport: %w", err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		return nil, fmt.Errorf("CloudEvents client: %w", err)
	}
	return &HTTPSink{cfg: cfg, client: c, tr: tr}, nil
}

// errFinal marks an answer not worth retrying (a 4xx other than 429).
var errFinal = errors.New("receiver refused the event")

// Write delivers ev, retrying with exponential backoff.
func (s *HTTPSink) Write(ctx context.Context, ev *event.Event) error {
	wait := s.cfg.Backoff
	var err error
	for attempt := 0; ; attempt++ {
		err = s.send(ctx, ev)
		if err == nil || errors.Is(err, errFinal) || attempt >= s.cfg.Retries {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (then %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxHTTPBackoff)
	}
}

func (s *HTTPSink) send(ctx context.Context, ev *event.Event) error {
	res := s.client.Send(cloudevents.WithEncodingBinary(ctx), *ev)
	if cloudevents.IsUndelivered(res) {
		return fmt.Errorf("undelivered: %w", res)
	}
	var hr *cehttp.Result
	if cloudevents.ResultAs(res, &hr) && (hr.StatusCode < 200 || hr.StatusCode > 299) {
		err := fmt.Errorf("receiver answered %d", hr.StatusCode)
		if hr.StatusCode >= 400 && hr.StatusCode < 500 && hr.StatusCode != http.StatusTooManyRequests {
			return fmt.Errorf("%w: %w", errFinal, err)
		}
		return err
	}
	if cloudevents.IsNACK(res) {
		return fmt.Errorf("receiver refused: %w", res)
	}
	return nil
}

// Close closes idle connections.
func (s *HTTPSink) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}
