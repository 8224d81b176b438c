package testcert

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testTimeout = 10 * time.Second

func parse(t *testing.T, l Leaf) *x509.Certificate {
	t.Helper()
	c := l.TLSCertificate(t)
	if c.Leaf == nil {
		t.Fatal("TLSCertificate left Leaf unparsed")
	}
	return c.Leaf
}

// TestLeafVerifies checks a leaf against the pools a server and a client
// would hold: a valid leaf of the CA passes for 127.0.0.1 and localhost in
// both roles, an expired one or one of another CA does not.
func TestLeafVerifies(t *testing.T) {
	ca, other := NewCA(t, "ca"), NewCA(t, "other")
	tests := []struct {
		name    string
		leaf    Leaf
		host    string
		usage   x509.ExtKeyUsage
		wantErr func(error) bool
	}{
		{"valid server at 127.0.0.1", ca.Valid(t), "127.0.0.1", x509.ExtKeyUsageServerAuth, nil},
		{"valid server at localhost", ca.Valid(t), "localhost", x509.ExtKeyUsageServerAuth, nil},
		{"valid client", ca.Valid(t), "", x509.ExtKeyUsageClientAuth, nil},
		{"expired", ca.Expired(t), "127.0.0.1", x509.ExtKeyUsageServerAuth, func(err error) bool {
			var invalid x509.CertificateInvalidError
			return errors.As(err, &invalid) && invalid.Reason == x509.Expired
		}},
		{"another CA", other.Valid(t), "127.0.0.1", x509.ExtKeyUsageServerAuth, func(err error) bool {
			var unknown x509.UnknownAuthorityError
			return errors.As(err, &unknown)
		}},
		{"another host", ca.Valid(t), "example.com", x509.ExtKeyUsageServerAuth, func(err error) bool {
			var host x509.HostnameError
			return errors.As(err, &host)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.leaf).Verify(x509.VerifyOptions{
				Roots: ca.Pool(), DNSName: tt.host, KeyUsages: []x509.ExtKeyUsage{tt.usage},
			})
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.wantErr != nil && !tt.wantErr(err) {
				t.Fatalf("Verify: %v, want the other error", err)
			}
		})
	}
}

// TestSerialsDistinct checks that each certificate, CA or leaf, carries a
// serial number of its own, and that Leaf.Serial is the one in it.
func TestSerialsDistinct(t *testing.T) {
	ca := NewCA(t, "ca")
	seen := map[int64]string{ca.Cert.SerialNumber.Int64(): "ca"}
	leaves := map[string]Leaf{"valid 1": ca.Valid(t), "valid 2": ca.Valid(t), "expired": ca.Expired(t),
		"other CA": NewCA(t, "other").Valid(t)}
	for name, l := range leaves {
		if got := parse(t, l).SerialNumber.Int64(); got != l.Serial {
			t.Errorf("%s: certificate serial %d, Leaf.Serial %d", name, got, l.Serial)
		}
		if prev, dup := seen[l.Serial]; dup {
			t.Errorf("%s and %s share serial %d", name, prev, l.Serial)
		}
		seen[l.Serial] = name
	}
}

// TestWriteRewriteIsNoticed checks that Write lays the pair out under the
// names it returns and that each write moves the modification time on.
func TestWriteRewriteIsNoticed(t *testing.T) {
	ca, dir := NewCA(t, "ca"), t.TempDir()
	modTime := func(path string) time.Time {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	first := ca.Valid(t)
	certFile, keyFile := first.Write(t, dir)
	if certFile != filepath.Join(dir, "tls.crt") || keyFile != filepath.Join(dir, "tls.key") {
		t.Fatalf("Write = %s, %s", certFile, keyFile)
	}
	certMod, keyMod := modTime(certFile), modTime(keyFile)
	if !keyMod.Before(certMod) {
		t.Errorf("key written at %v, certificate at %v; want the key first", keyMod, certMod)
	}
	second := ca.Valid(t)
	second.Write(t, dir)
	for path, want := range map[string][]byte{certFile: second.CertPEM, keyFile: second.KeyPEM} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s does not hold the second leaf", path)
		}
	}
	if !modTime(certFile).After(certMod) {
		t.Errorf("rewritten certificate kept modification time %v", certMod)
	}
}

// TestClientConfigMutualTLS runs a handshake over loopback TCP between a
// server that requires client certificates of clientCA and a client made
// by ClientConfig.
func TestClientConfigMutualTLS(t *testing.T) {
	serverCA, clientCA := NewCA(t, "server CA"), NewCA(t, "client CA")
	served := serverCA.Valid(t)
	server := &tls.Config{Certificates: []tls.Certificate{served.TLSCertificate(t)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool()}
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"client certificate of the client CA", ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t)), true},
		{"no client certificate", ClientConfig(serverCA), false},
		{"client certificate of the server CA", ClientConfig(serverCA, serverCA.Valid(t).TLSCertificate(t)), false},
		{"client trusts the client CA only", ClientConfig(clientCA, clientCA.Valid(t).TLSCertificate(t)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			serverErr := make(chan error, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					serverErr <- err
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(testTimeout))
				s := tls.Server(conn, server)
				if err := s.Handshake(); err != nil {
					serverErr <- err
					return
				}
				_, err = s.Write([]byte{1})
				serverErr <- err
			}()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", ln.Addr().String(), tt.client)
			if err == nil {
				_ = conn.SetDeadline(time.Now().Add(testTimeout))
				// The server's verdict on the client certificate arrives
				// after the client's handshake ends, with the first read.
				_, err = conn.Read(make([]byte, 1))
				if sn := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); sn != served.Serial {
					t.Errorf("server presented certificate %d, want %d", sn, served.Serial)
				}
				conn.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("client error %v, want success %v", err, tt.ok)
			}
			select {
			case err := <-serverErr:
				if (err == nil) != tt.ok {
					t.Errorf("server error %v, want success %v", err, tt.ok)
				}
			case <-time.After(testTimeout):
				t.Fatal("server handshake did not end")
			}
		})
	}
}
