package guard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// CipherSuites are the TLS 1.2 suites the server accepts: forward-secret
// key exchange with an AEAD cipher only. TLS 1.3 suites are not
// configurable and are all sound.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// DefaultCertReloadInterval is how often CertReloader.Run looks at the
// files when its caller gives no interval.
const DefaultCertReloadInterval = 10 * time.Second

// CertReloader holds a server certificate pair, and optionally the CA
// bundle that client certificates must chain to, read from files, and
// reloads them when the files change, so certificates are rotated without
// a restart. A change is noticed by the files' size and modification time;
// a new set that does not load (a key that does not match its certificate,
// a half-written file) is logged and the previous set keeps serving. It is
// safe for concurrent use.
type CertReloader struct {
	certFile, keyFile, caFile string
	log                       *zap.Logger

	cur atomic.Pointer[certState]

	mu     sync.Mutex // serialises reloads
	failed fileStamps // the stamps of the last set that failed to load
}

// certState is one loaded set of files; never changed once published.
type certState struct {
	stamps    fileStamps
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil without client certificate checks
}

// fileStamp identifies one version of a file without reading it.
type fileStamp struct {
	size int64
	mod  time.Time
}

// fileStamps are the stamps of the certificate, key and CA files.
type fileStamps [3]fileStamp

func (a fileStamps) equal(b fileStamps) bool {
	for i := range a {
		if a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) {
			return false
		}
	}
	return true
}

// NewCertReloader loads the certificate pair from certFile and keyFile
// (PEM) and, when clientCAFile is not empty, the PEM bundle of CAs that
// client certificates must chain to; with it, clients must present a valid
// certificate. It fails when the files do not load.
func NewCertReloader(certFile, keyFile, clientCAFile string, log *zap.Logger) (*CertReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are both required")
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, log: log}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	st, err := r.load(stamps)
	if err != nil {
		return nil, err
	}
	r.cur.Store(st)
	r.checkValidity(st.cert, time.Now())
	return r, nil
}

// stat returns the current stamps of the files.
func (r *CertReloader) stat() (fileStamps, error) {
	var s fileStamps
	for i, path := range []string{r.certFile, r.keyFile, r.caFile} {
		if path == "" {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		s[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return s, nil
}

// load reads the files into a new state.
func (r *CertReloader) load(stamps fileStamps) (*certState, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	st := &certState{stamps: stamps, cert: &cert}
	if r.caFile != "" {
		pem, err := os.ReadFile(r.caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA bundle: %w", err)
		}
		st.clientCAs = x509.NewCertPool()
		if !st.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA bundle %s holds no PEM certificate", r.caFile)
		}
	}
	return st, nil
}

// checkValidity logs a certificate that clients will refuse on its dates.
func (r *CertReloader) checkValidity(cert *tls.Certificate, now time.Time) {
	leaf := cert.Leaf
	if leaf == nil {
		return
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		r.log.Error("tls certificate is outside its validity period; clients will refuse it",
			zap.String("file", r.certFile), zap.Time("not_before", leaf.NotBefore), zap.Time("not_after", leaf.NotAfter))
	}
}

// Reload loads the files again when they changed since the set in use was
// loaded. It reports whether a new set took effect; on an error the set in
// use stays, and the same unchanged files are not tried (or logged) again.
func (r *CertReloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps, err := r.stat()
	if err != nil {
		return false, err
	}
	if stamps.equal(r.cur.Load().stamps) || stamps.equal(r.failed) {
		return false, nil
	}
	st, err := r.load(stamps)
	if err != nil {
		r.failed = stamps
		return false, err
	}
	r.cur.Store(st)
	r.failed = fileStamps{}
	r.checkValidity(st.cert, time.Now())
	fields := []zap.Field{zap.String("file", r.certFile)}
	if leaf := st.cert.Leaf; leaf != nil {
		fields = append(fields, zap.String("subject", leaf.Subject.String()), zap.Time("not_after", leaf.NotAfter))
	}
	r.log.Info("tls certificate reloaded", fields...)
	return true, nil
}

// Run calls Reload every interval (DefaultCertReloadInterval when <= 0)
// until ctx ends, logging failures.
func (r *CertReloader) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultCertReloadInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := r.Reload(); err != nil {
				r.log.Error("tls certificate reload failed; still serving the previous certificate", zap.Error(err))
			}
		}
	}
}

// Certificate returns the certificate in use.
func (r *CertReloader) Certificate() *tls.Certificate {
	return r.cur.Load().cert
}

// ServerConfig returns a server TLS configuration that always presents
// the certificate in use and, with a client CA bundle, requires and
// verifies client certificates against the bundle in use. nextProtos are
// the ALPN protocols offered, most preferred first. TLS 1.2 is the oldest
// version accepted.
func (r *CertReloader) ServerConfig(nextProtos ...string) *tls.Config {
	template := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		NextProtos:   nextProtos,
	}
	type derived struct {
		st  *certState
		cfg *tls.Config
	}
	// The configuration for a handshake is rebuilt only when the loaded
	// set changed, not on every connection.
	var cache atomic.Pointer[derived]
	base := template.Clone()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		st := r.cur.Load()
		if d := cache.Load(); d != nil && d.st == st {
			return d.cfg, nil
		}
		cfg := template.Clone()
		cfg.Certificates = []tls.Certificate{*st.cert}
		if st.clientCAs != nil {
			cfg.ClientCAs = st.clientCAs
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		cache.Store(&derived{st: st, cfg: cfg})
		return cfg, nil
	}
	return base
}
