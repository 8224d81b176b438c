package testcert

import (
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
)

// serial numbers every certificate the package makes, across all tests of
// a binary, so a test can tell which certificate a server presented. It
// also spaces the modification times WriteFile sets.
var serial atomic.Int64

// CA is a certificate authority made up for a test. It is safe for
// concurrent use once made: issuing only reads it.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// Key signs the certificates the CA issues.
	Key *ecdsa.PrivateKey
	// PEM is Cert PEM-encoded, as a client CA bundle holds it.
	PEM []byte
}

// NewCA makes a CA named name, valid from an hour ago to an hour from now.
func NewCA(t testing.TB, name string) *CA {
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
	return &CA{Cert: cert, Key: key, PEM: encode("CERTIFICATE", der)}
}

// Pool is a certificate pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Leaf is a certificate a CA issued for 127.0.0.1 and localhost, usable by
// servers and clients alike. It is safe for concurrent use while no one
// changes its slices.
type Leaf struct {
	// CertPEM and KeyPEM are the certificate and its EC private key,
	// PEM-encoded.
	CertPEM, KeyPEM []byte
	// Serial is the certificate's serial number, distinct from every
	// other certificate the package made.
	Serial int64
}

// Issue signs a leaf valid from notBefore to notAfter.
func (ca *CA) Issue(t testing.TB, notBefore, notAfter time.Time) Leaf {
	t.Helper()
	key := newKey(t)
	sn := serial.Add(1)
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Leaf{CertPEM: encode("CERTIFICATE", der), KeyPEM: encode("EC PRIVATE KEY", kder), Serial: sn}
}

// Valid issues a leaf valid from an hour ago to an hour from now.
func (ca *CA) Valid(t testing.TB) Leaf {
	t.Helper()
	return ca.Issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// Expired issues a leaf whose validity ended an hour ago.
func (ca *CA) Expired(t testing.TB) Leaf {
	t.Helper()
	return ca.Issue(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
}

// TLSCertificate is the leaf as a tls.Certificate, for a client to present
// or a server to serve.
func (l Leaf) TLSCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Write puts the leaf in dir as tls.crt and tls.key, with WriteFile, and
// returns their paths. The key goes first: a watcher that reacts to the
// certificate then finds the key that matches it already there.
func (l Leaf) Write(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	WriteFile(t, keyFile, l.KeyPEM)
	WriteFile(t, certFile, l.CertPEM)
	return certFile, keyFile
}

// WriteFile writes data to path and gives the file a modification time of
// its own, later than any WriteFile set before, so a rewrite is a change
// even on a file system whose times are coarser than the test is quick.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mod := time.Now().Add(time.Duration(serial.Add(1)) * time.Second)
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// ClientConfig is a client configuration that trusts roots for a server at
// 127.0.0.1 and presents certs.
func ClientConfig(roots *CA, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: roots.Pool(), ServerName: "127.0.0.1", Certificates: certs}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func encode(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}
