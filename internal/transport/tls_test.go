package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const tlsTestTimeout = 10 * time.Second

// testCA is a certificate authority made up for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf for 127.0.0.1 valid from notBefore to notAfter; it
// returns the PEM certificate and key and the serial number.
func (ca *testCA) issue(t *testing.T, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, sn int64) {
	t.Helper()
	key := newKey(t)
	sn = serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: "onnxserve-test"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), sn
}

// valid issues a leaf valid now.
func (ca *testCA) valid(t *testing.T) (certPEM, keyPEM []byte, sn int64) {
	return ca.issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// client issues a client certificate valid now.
func (ca *testCA) client(t *testing.T) tls.Certificate {
	certPEM, keyPEM, _ := ca.valid(t)
	return clientCert(t, certPEM, keyPEM)
}

// clientCert is a tls.Certificate from PEM.
func clientCert(t *testing.T, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeFile writes data and gives the file a modification time of its
// own, so a rewrite is a change even on a file system with coarse times.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(serial.Add(1)) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// handshake runs a TLS handshake between server and client configs over
// loopback TCP and returns the client's error and the serial number of the
// certificate the server presented.
func handshake(t *testing.T, server, client *tls.Config) (int64, error) {
	t.Helper()
	// A TCP pair, not net.Pipe: a peer that gives up writes its alert
	// while the other is still writing, which an unbuffered pipe deadlocks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	deadline := time.Now().Add(tlsTestTimeout)
	_ = sc.SetDeadline(deadline)
	_ = cc.SetDeadline(deadline)
	serverDone := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3 lets the client finish before the server has
			// checked its certificate; a read makes the server's verdict
			// reach the client.
			_, err = s.Write([]byte{1})
		}
		if err != nil {
			sc.Close()
		}
		serverDone <- err
	}()
	c := tls.Client(cc, client)
	err = c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	var sn int64
	if st := c.ConnectionState(); len(st.PeerCertificates) > 0 {
		sn = st.PeerCertificates[0].SerialNumber.Int64()
	}
	cc.Close()
	<-serverDone
	return sn, err
}

func clientConfig(roots *testCA, certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(roots.cert)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: certs}
}

// pairFiles writes a certificate pair (and optional CA bundle) into dir.
func pairFiles(t *testing.T, dir string, certPEM, keyPEM, caPEM []byte) (certFile, keyFile, caFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	if caPEM != nil {
		caFile = filepath.Join(dir, "ca.crt")
		writeFile(t, caFile, caPEM)
	}
	return certFile, keyFile, caFile
}

func TestServerConfigHandshakes(t *testing.T) {
	serverCA, clientCA, otherCA := newCA(t, "server CA"), newCA(t, "client CA"), newCA(t, "other CA")
	certPEM, keyPEM, _ := serverCA.valid(t)
	expiredPEM, expiredKey, _ := serverCA.issue(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	goodClient := clientCA.client(t)
	wrongClient := otherCA.client(t)
	expPEM, expKey, _ := clientCA.issue(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	expiredClient := clientCert(t, expPEM, expKey)

	plain := func(t *testing.T, cert, key []byte) *tls.Config {
		r, err := NewCertReloader(pairFilesIn(t, cert, key, nil))
		if err != nil {
			t.Fatal(err)
		}
		return r.ServerConfig("http/1.1")
	}
	mutual := func(t *testing.T) *tls.Config {
		r, err := NewCertReloader(pairFilesIn(t, certPEM, keyPEM, clientCA.pem))
		if err != nil {
			t.Fatal(err)
		}
		return r.ServerConfig("http/1.1")
	}
	tests := []struct {
		name   string
		server func(t *testing.T) *tls.Config
		client *tls.Config
		ok     bool
	}{
		{"valid certificate", func(t *testing.T) *tls.Config { return plain(t, certPEM, keyPEM) }, clientConfig(serverCA), true},
		{"expired server certificate", func(t *testing.T) *tls.Config { return plain(t, expiredPEM, expiredKey) }, clientConfig(serverCA), false},
		{"client trusts another CA", func(t *testing.T) *tls.Config { return plain(t, certPEM, keyPEM) }, clientConfig(otherCA), false},
		{"TLS 1.1 refused", func(t *testing.T) *tls.Config { return plain(t, certPEM, keyPEM) },
			func() *tls.Config {
				c := clientConfig(serverCA)
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				return c
			}(), false},
		{"TLS 1.2 with an AEAD suite", func(t *testing.T) *tls.Config { return plain(t, certPEM, keyPEM) },
			func() *tls.Config {
				c := clientConfig(serverCA)
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
				return c
			}(), true},
		{"TLS 1.2 CBC suite refused", func(t *testing.T) *tls.Config { return plain(t, certPEM, keyPEM) },
			func() *tls.Config {
				c := clientConfig(serverCA)
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
				return c
			}(), false},
		{"mTLS client certificate", mutual, clientConfig(serverCA, goodClient), true},
		{"mTLS no client certificate", mutual, clientConfig(serverCA), false},
		{"mTLS client certificate of another CA", mutual, clientConfig(serverCA, wrongClient), false},
		{"mTLS expired client certificate", mutual, clientConfig(serverCA, expiredClient), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handshake(t, tt.server(t), tt.client)
			if (err == nil) != tt.ok {
				t.Fatalf("handshake error %v, want success %v", err, tt.ok)
			}
		})
	}
}

// pairFilesIn is pairFiles in a fresh folder, in NewCertReloader's
// argument order, with a no-op logger.
func pairFilesIn(t *testing.T, certPEM, keyPEM, caPEM []byte) (string, string, string, *zap.Logger) {
	c, k, ca := pairFiles(t, t.TempDir(), certPEM, keyPEM, caPEM)
	return c, k, ca, zap.NewNop()
}

func TestNewCertReloaderErrors(t *testing.T) {
	ca := newCA(t, "ca")
	certA, keyA, _ := ca.valid(t)
	_, keyB, _ := ca.valid(t)
	tests := []struct {
		name                string
		cert, key, clientCA []byte
	}{
		{"key of another certificate", certA, keyB, nil},
		{"key is no key", certA, []byte("not a key"), nil},
		{"client CA bundle without certificates", certA, keyA, []byte("nothing here")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCertReloader(pairFilesIn(t, tt.cert, tt.key, tt.clientCA)); err == nil {
				t.Fatal("NewCertReloader accepted a bad set")
			}
		})
	}
	if _, err := NewCertReloader(filepath.Join(t.TempDir(), "missing.crt"), "missing.key", "", zap.NewNop()); err == nil {
		t.Error("NewCertReloader accepted missing files")
	}
	if _, err := NewCertReloader("", "", "", zap.NewNop()); err == nil {
		t.Error("NewCertReloader accepted no files")
	}
}

// TestCertReloaderReload rotates the server certificate and the client CA
// bundle under a live configuration: good sets take effect, a bad set is
// logged once and the previous set keeps serving.
func TestCertReloaderReload(t *testing.T) {
	serverCA, clientCA1, clientCA2 := newCA(t, "server CA"), newCA(t, "client CA 1"), newCA(t, "client CA 2")
	certA, keyA, snA := serverCA.valid(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := pairFiles(t, dir, certA, keyA, clientCA1.pem)
	core, logs := observer.New(zapcore.InfoLevel)
	r, err := NewCertReloader(certFile, keyFile, caFile, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ServerConfig("http/1.1")
	client1 := clientConfig(serverCA, clientCA1.client(t))
	client2 := clientConfig(serverCA, clientCA2.client(t))

	expect := func(t *testing.T, client *tls.Config, wantSN int64, ok bool) {
		t.Helper()
		sn, err := handshake(t, cfg, client)
		if (err == nil) != ok {
			t.Fatalf("handshake error %v, want success %v", err, ok)
		}
		if ok && sn != wantSN {
			t.Fatalf("server presented certificate %d, want %d", sn, wantSN)
		}
	}
	reload := func(t *testing.T, wantChanged, wantErr bool) {
		t.Helper()
		changed, err := r.Reload()
		if changed != wantChanged || (err != nil) != wantErr {
			t.Fatalf("Reload = %v, %v; want changed %v, error %v", changed, err, wantChanged, wantErr)
		}
	}

	expect(t, client1, snA, true)
	expect(t, client2, 0, false)
	reload(t, false, false) // nothing changed

	// A new pair takes effect without a restart.
	certB, keyB, snB := serverCA.valid(t)
	writeFile(t, certFile, certB)
	writeFile(t, keyFile, keyB)
	reload(t, true, false)
	expect(t, client1, snB, true)
	if logs.FilterMessage("tls certificate reloaded").Len() != 1 {
		t.Errorf("logs %v, want one reload line", logs.All())
	}

	// A certificate written before its key: the mismatched pair fails and
	// the previous one keeps serving; the same files are not retried.
	certC, keyC, snC := serverCA.valid(t)
	writeFile(t, certFile, certC)
	reload(t, false, true)
	expect(t, client1, snB, true)
	reload(t, false, false)
	// The key arrives: the new pair takes over.
	writeFile(t, keyFile, keyC)
	reload(t, true, false)
	expect(t, client1, snC, true)

	// Rotating the client CA bundle changes who may connect.
	writeFile(t, caFile, clientCA2.pem)
	reload(t, true, false)
	expect(t, client2, snC, true)
	expect(t, client1, 0, false)
}

// TestCertReloaderRun checks that the polling loop notices a change on its
// own and stops with its context.
func TestCertReloaderRun(t *testing.T) {
	ca := newCA(t, "ca")
	certA, keyA, _ := ca.valid(t)
	certFile, keyFile, _ := pairFiles(t, t.TempDir(), certA, keyA, nil)
	r, err := NewCertReloader(certFile, keyFile, "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx, 10*time.Millisecond)
		close(done)
	}()
	certB, keyB, snB := ca.valid(t)
	writeFile(t, keyFile, keyB)
	writeFile(t, certFile, certB)
	deadline := time.After(tlsTestTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for r.Certificate().Leaf.SerialNumber.Int64() != snB {
		select {
		case <-deadline:
			t.Fatal("Run did not pick up the new certificate")
		case <-tick.C:
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(tlsTestTimeout):
		t.Fatal("Run did not stop with its context")
	}
}
