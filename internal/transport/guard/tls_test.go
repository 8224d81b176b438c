package guard

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onnxserve/onnxserve/internal/testcert"
)

const tlsTestTimeout = 10 * time.Second

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

// pairFiles writes a certificate pair (and optional CA bundle) into dir.
func pairFiles(t *testing.T, dir string, pair testcert.Leaf, caPEM []byte) (certFile, keyFile, caFile string) {
	t.Helper()
	certFile, keyFile = pair.Write(t, dir)
	if caPEM != nil {
		caFile = filepath.Join(dir, "ca.crt")
		testcert.WriteFile(t, caFile, caPEM)
	}
	return certFile, keyFile, caFile
}

func TestServerConfigHandshakes(t *testing.T) {
	serverCA, clientCA, otherCA := testcert.NewCA(t, "server CA"), testcert.NewCA(t, "client CA"), testcert.NewCA(t, "other CA")
	served, expired := serverCA.Valid(t), serverCA.Expired(t)
	goodClient := clientCA.Valid(t).TLSCertificate(t)
	wrongClient := otherCA.Valid(t).TLSCertificate(t)
	expiredClient := clientCA.Expired(t).TLSCertificate(t)

	plain := func(t *testing.T, pair testcert.Leaf) *tls.Config {
		r, err := NewCertReloader(pairFilesIn(t, pair, nil))
		if err != nil {
			t.Fatal(err)
		}
		return r.ServerConfig("http/1.1")
	}
	mutual := func(t *testing.T) *tls.Config {
		r, err := NewCertReloader(pairFilesIn(t, served, clientCA.PEM))
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
		{"valid certificate", func(t *testing.T) *tls.Config { return plain(t, served) }, testcert.ClientConfig(serverCA), true},
		{"expired server certificate", func(t *testing.T) *tls.Config { return plain(t, expired) }, testcert.ClientConfig(serverCA), false},
		{"client trusts another CA", func(t *testing.T) *tls.Config { return plain(t, served) }, testcert.ClientConfig(otherCA), false},
		{"TLS 1.1 refused", func(t *testing.T) *tls.Config { return plain(t, served) },
			func() *tls.Config {
				c := testcert.ClientConfig(serverCA)
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				return c
			}(), false},
		{"TLS 1.2 with an AEAD suite", func(t *testing.T) *tls.Config { return plain(t, served) },
			func() *tls.Config {
				c := testcert.ClientConfig(serverCA)
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
				return c
			}(), true},
		{"TLS 1.2 CBC suite refused", func(t *testing.T) *tls.Config { return plain(t, served) },
			func() *tls.Config {
				c := testcert.ClientConfig(serverCA)
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
				return c
			}(), false},
		{"mTLS client certificate", mutual, testcert.ClientConfig(serverCA, goodClient), true},
		{"mTLS no client certificate", mutual, testcert.ClientConfig(serverCA), false},
		{"mTLS client certificate of another CA", mutual, testcert.ClientConfig(serverCA, wrongClient), false},
		{"mTLS expired client certificate", mutual, testcert.ClientConfig(serverCA, expiredClient), false},
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
func pairFilesIn(t *testing.T, pair testcert.Leaf, caPEM []byte) (string, string, string, *zap.Logger) {
	c, k, ca := pairFiles(t, t.TempDir(), pair, caPEM)
	return c, k, ca, zap.NewNop()
}

func TestNewCertReloaderErrors(t *testing.T) {
	ca := testcert.NewCA(t, "ca")
	a, b := ca.Valid(t), ca.Valid(t)
	tests := []struct {
		name     string
		pair     testcert.Leaf
		clientCA []byte
	}{
		{"key of another certificate", testcert.Leaf{CertPEM: a.CertPEM, KeyPEM: b.KeyPEM}, nil},
		{"key is no key", testcert.Leaf{CertPEM: a.CertPEM, KeyPEM: []byte("not a key")}, nil},
		{"client CA bundle without certificates", a, []byte("nothing here")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCertReloader(pairFilesIn(t, tt.pair, tt.clientCA)); err == nil {
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
	serverCA, clientCA1, clientCA2 := testcert.NewCA(t, "server CA"), testcert.NewCA(t, "client CA 1"), testcert.NewCA(t, "client CA 2")
	a := serverCA.Valid(t)
	certFile, keyFile, caFile := pairFiles(t, t.TempDir(), a, clientCA1.PEM)
	core, logs := observer.New(zapcore.InfoLevel)
	r, err := NewCertReloader(certFile, keyFile, caFile, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ServerConfig("http/1.1")
	client1 := testcert.ClientConfig(serverCA, clientCA1.Valid(t).TLSCertificate(t))
	client2 := testcert.ClientConfig(serverCA, clientCA2.Valid(t).TLSCertificate(t))

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

	expect(t, client1, a.Serial, true)
	expect(t, client2, 0, false)
	reload(t, false, false) // nothing changed

	// A new pair takes effect without a restart.
	b := serverCA.Valid(t)
	testcert.WriteFile(t, certFile, b.CertPEM)
	testcert.WriteFile(t, keyFile, b.KeyPEM)
	reload(t, true, false)
	expect(t, client1, b.Serial, true)
	if logs.FilterMessage("tls certificate reloaded").Len() != 1 {
		t.Errorf("logs %v, want one reload line", logs.All())
	}

	// A certificate written before its key: the mismatched pair fails and
	// the previous one keeps serving; the same files are not retried.
	c := serverCA.Valid(t)
	testcert.WriteFile(t, certFile, c.CertPEM)
	reload(t, false, true)
	expect(t, client1, b.Serial, true)
	reload(t, false, false)
	// The key arrives: the new pair takes over.
	testcert.WriteFile(t, keyFile, c.KeyPEM)
	reload(t, true, false)
	expect(t, client1, c.Serial, true)

	// Rotating the client CA bundle changes who may connect.
	testcert.WriteFile(t, caFile, clientCA2.PEM)
	reload(t, true, false)
	expect(t, client2, c.Serial, true)
	expect(t, client1, 0, false)
}

// TestCertReloaderRun checks that the polling loop notices a change on its
// own and stops with its context.
func TestCertReloaderRun(t *testing.T) {
	ca := testcert.NewCA(t, "ca")
	certFile, keyFile := ca.Valid(t).Write(t, t.TempDir())
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
	next := ca.Valid(t)
	testcert.WriteFile(t, keyFile, next.KeyPEM)
	testcert.WriteFile(t, certFile, next.CertPEM)
	deadline := time.After(tlsTestTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for r.Certificate().Leaf.SerialNumber.Int64() != next.Serial {
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
