package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/testcert"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// startLogged starts a server like startServer, logging to log, and does
// not wait for readiness (a TLS server answers no plain probe).
func startLogged(t *testing.T, log *zap.Logger, repo string, extra ...string) *testServer {
	t.Helper()
	requireORT(t)
	args := append([]string{"--model-repository", repo, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1",
		"--shutdown-delay", "0s", "--repository-poll-interval", "200ms", "--repository-settle", "50ms",
		// Management calls from the test's loopback client, as `make run`
		// allows them; a test of the default passes --admin-allow-loopback=false.
		"--admin-allow-loopback",
		"--state-dir", t.TempDir()}, extra...)
	o, err := parseOptions(args)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(o, log, zap.NewAtomicLevel())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{a: a, http: "http://" + a.httpLn.Addr().String(), done: make(chan error, 1), stop: cancel}
	go func() { ts.done <- a.run(ctx) }()
	t.Cleanup(func() { ts.shutdown(t) })
	return ts
}

// waitOK polls get until it answers 200.
func waitOK(t *testing.T, get func() (*http.Response, error)) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		resp, err := get()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready in %v (last error %v)", testTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func grpcClient(t *testing.T, addr string, creds credentials.TransportCredentials) inference.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inference.NewGRPCInferenceServiceClient(conn)
}

// simpleGRPC is a valid request for "simple".
func simpleGRPC() *inference.ModelInferRequest {
	a, b := make([]int32, 16), make([]int32, 16)
	for i := range a {
		a[i], b[i] = int32(i), 2
	}
	in := func(name string, v []int32) *inference.ModelInferRequest_InferInputTensor {
		return &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: "INT32", Shape: []int64{1, 16},
			Contents: &inference.InferTensorContents{IntContents: v}}
	}
	return &inference.ModelInferRequest{ModelName: "simple", Inputs: []*inference.ModelInferRequest_InferInputTensor{in("INPUT0", a), in("INPUT1", b)}}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestTLSEndToEnd runs the server with TLS, client certificates and TLS
// on the metrics port: the right clients get in on every port, plaintext
// and wrong certificates do not, and a new certificate is served without a
// restart.
func TestTLSEndToEnd(t *testing.T) {
	serverCA, clientCA, otherCA := testcert.NewCA(t, "server CA"), testcert.NewCA(t, "client CA"), testcert.NewCA(t, "other CA")
	dir := t.TempDir()
	certFile, keyFile := serverCA.Valid(t).Write(t, dir)
	caFile := filepath.Join(dir, "clients.pem")
	testcert.WriteFile(t, caFile, clientCA.PEM)
	core, logs := observer.New(zapcore.InfoLevel)
	ts := startLogged(t, zap.New(core), copyRepo(t), "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", caFile,
		"--metrics-tls", "--tls-reload-interval", "20ms")
	httpsURL := "https://" + ts.a.httpLn.Addr().String()
	metricsURL := "https://" + ts.a.metricsLn.Addr().String() + "/metrics"
	grpcAddr := ts.a.grpcLn.Addr().String()

	good := httpsClient(testcert.ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t)))
	waitOK(t, func() (*http.Response, error) { return good.Get(httpsURL + "/v2/health/ready") })

	t.Run("https with a client certificate", func(t *testing.T) {
		resp, err := good.Post(httpsURL+"/v2/models/simple/infer", "application/json", strings.NewReader(simpleBody(seq(0, 16), seq(0, 16))))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("status %d, TLS %+v", resp.StatusCode, resp.TLS)
		}
		resp, err = good.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics over TLS: %d", resp.StatusCode)
		}
	})
	refused := map[string]*http.Client{
		"no client certificate":             httpsClient(testcert.ClientConfig(serverCA)),
		"client certificate of another CA":  httpsClient(testcert.ClientConfig(serverCA, otherCA.Valid(t).TLSCertificate(t))),
		"expired client certificate":        httpsClient(testcert.ClientConfig(serverCA, clientCA.Expired(t).TLSCertificate(t))),
		"client that does not trust the CA": httpsClient(testcert.ClientConfig(otherCA, clientCA.Valid(t).TLSCertificate(t))),
		"plaintext":                         {Timeout: testTimeout},
		"plaintext keep-alive":              {Timeout: testTimeout, Transport: &http.Transport{}},
		"TLS 1.1 with a client certificate": httpsClient(func() *tls.Config {
			c := testcert.ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t))
			c.MaxVersion = tls.VersionTLS11
			return c
		}()),
		"TLS 1.2 CBC with a client cert": httpsClient(func() *tls.Config {
			c := testcert.ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t))
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
			return c
		}()),
	}
	for name, c := range refused {
		t.Run("refused "+name, func(t *testing.T) {
			for _, url := range []string{httpsURL + "/v2/health/live", metricsURL} {
				if strings.HasPrefix(name, "plaintext") {
					url = "http://" + strings.TrimPrefix(url, "https://")
				}
				resp, err := c.Get(url)
				if err == nil {
					resp.Body.Close()
					// net/http, on the metrics port, answers plaintext
					// with a 400 before it closes.
					if resp.StatusCode != http.StatusBadRequest || !strings.HasSuffix(url, "/metrics") {
						t.Fatalf("GET %s answered %d", url, resp.StatusCode)
					}
				}
			}
		})
	}

	t.Run("grpc", func(t *testing.T) {
		ok := grpcClient(t, grpcAddr, credentials.NewTLS(testcert.ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t))))
		resp, err := ok.ModelInfer(ctxTimeout(t), simpleGRPC())
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetModelVersion() != "1" {
			t.Fatalf("response %v", resp)
		}
		for name, creds := range map[string]credentials.TransportCredentials{
			"plaintext":             insecure.NewCredentials(),
			"no client certificate": credentials.NewTLS(testcert.ClientConfig(serverCA)),
			"another CA":            credentials.NewTLS(testcert.ClientConfig(serverCA, otherCA.Valid(t).TLSCertificate(t))),
		} {
			c := grpcClient(t, grpcAddr, creds)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := c.ServerLive(ctx, &inference.ServerLiveRequest{})
			cancel()
			if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				t.Errorf("%s: %v, want a connection failure", name, err)
			}
		}
	})

	t.Run("certificate reload", func(t *testing.T) {
		client := testcert.ClientConfig(serverCA, clientCA.Valid(t).TLSCertificate(t))
		presented := func() int64 {
			conn, err := tls.Dial("tcp", ts.a.httpLn.Addr().String(), client)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		}
		next := serverCA.Valid(t)
		next.Write(t, dir)
		deadline := time.Now().Add(testTimeout)
		for sn := presented(); sn != next.Serial; sn = presented() {
			if time.Now().After(deadline) {
				t.Fatalf("the server still presents certificate %d, not the new %d", sn, next.Serial)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// A broken pair is logged, and the working one stays in service.
		testcert.WriteFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
		for logs.FilterMessage("tls certificate reload failed; still serving the previous certificate").Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("a broken certificate file was not reported")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if sn := presented(); sn != next.Serial {
			t.Fatalf("after a bad rotation the server presents %d, want %d", sn, next.Serial)
		}
	})
}

// TestExpiredServerCertificate: clients refuse a server whose certificate
// expired; the server starts anyway (and logs it), so a renewal can be
// dropped in without a restart.
func TestExpiredServerCertificate(t *testing.T) {
	ca := testcert.NewCA(t, "server CA")
	certFile, keyFile := ca.Expired(t).Write(t, t.TempDir())
	core, logs := observer.New(zapcore.InfoLevel)
	ts := startLogged(t, zap.New(core), copyRepo(t), "--tls-cert", certFile, "--tls-key", keyFile)
	if logs.FilterMessage("tls certificate is outside its validity period; clients will refuse it").Len() != 1 {
		t.Errorf("no error logged for the expired certificate: %v", logs.All())
	}
	_, err := httpsClient(testcert.ClientConfig(ca)).Get("https://" + ts.a.httpLn.Addr().String() + "/v2/health/live")
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Fatalf("GET with an expired server certificate: %v, want an expired-certificate error", err)
	}
}

// TestTokensEndToEnd checks the admin and inference tokens on both
// protocols, and that no token ever reaches the log.
func TestTokensEndToEnd(t *testing.T) {
	const adminToken, userA, userB = "admin-7f3a9c", "user-a-51c2e8", "user-b-0d9b44"
	dir := t.TempDir()
	adminFile, infFile := filepath.Join(dir, "admin"), filepath.Join(dir, "inference")
	if err := os.WriteFile(adminFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(infFile, []byte("# one token per client\n"+userA+"\n\n"+userB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	ts := startLogged(t, zap.New(core), copyRepo(t), "--admin-token-file", adminFile, "--inference-token-file", infFile)
	ts.waitReady(t)

	call := func(method, path, token, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, ts.http+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	infer := simpleBody(seq(0, 16), seq(0, 16))
	tests := []struct {
		name, method, path, token, body string
		code                            int
	}{
		{"infer without token", "POST", "/v2/models/simple/infer", "", infer, 401},
		{"infer with a wrong token", "POST", "/v2/models/simple/infer", "nope", infer, 401},
		{"infer with the admin token", "POST", "/v2/models/simple/infer", adminToken, infer, 401},
		{"infer as user a", "POST", "/v2/models/simple/infer", userA, infer, 200},
		{"infer as user b", "POST", "/v2/models/simple/infer", userB, infer, 200},
		{"metadata without token", "GET", "/v2/models/simple", "", "", 401},
		{"metadata as user a", "GET", "/v2/models/simple", userA, "", 200},
		{"server metadata without token", "GET", "/v2", "", "", 401},
		{"live without token", "GET", "/v2/health/live", "", "", 200},
		{"ready without token", "GET", "/v2/health/ready", "", "", 200},
		{"model ready without token", "GET", "/v2/models/simple/ready", "", "", 200},
		{"index without token", "POST", "/v2/repository/index", "", "", 401},
		{"index as a user", "POST", "/v2/repository/index", userA, "", 401},
		{"index as admin", "POST", "/v2/repository/index", adminToken, "", 200},
		{"traffic get without token", "GET", "/v2/models/classifier/traffic", "", "", 401},
		{"traffic get as a user", "GET", "/v2/models/classifier/traffic", userA, "", 401},
		{"traffic get as admin", "GET", "/v2/models/classifier/traffic", adminToken, "", 200},
		{"traffic put without token", "PUT", "/v2/models/classifier/traffic", "", `{"split":{"1":50,"2":50}}`, 401},
		{"traffic put as admin", "PUT", "/v2/models/classifier/traffic", adminToken, `{"split":{"1":50,"2":50}}`, 200},
		{"load without token", "POST", "/v2/repository/models/simple/load", "", "", 401},
		{"unload as a user", "POST", "/v2/repository/models/simple/unload", userB, "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, header, body := call(tt.method, tt.path, tt.token, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			if code == 401 && (body != `{"error":"unauthorized"}` || header.Get("WWW-Authenticate") != "Bearer") {
				t.Fatalf("401 answer %q (WWW-Authenticate %q) says too much or too little", body, header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("grpc", func(t *testing.T) {
		c := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
		as := func(token string) context.Context {
			ctx := ctxTimeout(t)
			if token == "" {
				return ctx
			}
			return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		for _, token := range []string{"", "nope", adminToken} {
			_, err := c.ModelInfer(as(token), simpleGRPC())
			if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "unauthenticated" {
				t.Errorf("infer with %q: %v", token, err)
			}
		}
		for _, token := range []string{userA, userB} {
			if _, err := c.ModelInfer(as(token), simpleGRPC()); err != nil {
				t.Errorf("infer as %s: %v", token, err)
			}
		}
		if _, err := c.ServerReady(as(""), &inference.ServerReadyRequest{}); err != nil {
			t.Errorf("health without a token: %v", err)
		}
		for _, token := range []string{"", userA} {
			_, err := c.RepositoryIndex(as(token), &inference.RepositoryIndexRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("index with %q: %v", token, err)
			}
			_, err = c.RepositoryModelUnload(as(token), &inference.RepositoryModelUnloadRequest{ModelName: "simple"})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("unload with %q: %v", token, err)
			}
		}
		if _, err := c.RepositoryIndex(as(adminToken), &inference.RepositoryIndexRequest{}); err != nil {
			t.Errorf("index as admin: %v", err)
		}
	})

	t.Run("log level writes need the admin token", func(t *testing.T) {
		url := "http://" + ts.a.metricsLn.Addr().String() + "/log-level"
		put := func(token string) int {
			req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"level":"debug"}`))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := put(""); code != http.StatusUnauthorized {
			t.Errorf("PUT without a token: %d", code)
		}
		if code := put(userA); code != http.StatusUnauthorized {
			t.Errorf("PUT with an inference token: %d", code)
		}
		if code := put(adminToken); code != http.StatusOK {
			t.Errorf("PUT with the admin token: %d", code)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET without a token: %d", resp.StatusCode)
		}
	})

	ts.shutdown(t)
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the check below would prove nothing")
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, secret := range []string{adminToken, userA, userB} {
			if strings.Contains(line, secret) {
				t.Errorf("a token reached the log: %s", line)
			}
		}
	}
}

// TestTokensNeverFromArgv: every flag that concerns a token names a file.
func TestTokensNeverFromArgv(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	_, perr := parseOptions([]string{"-h"})
	os.Stderr = stderr
	w.Close()
	usage, _ := io.ReadAll(r)
	if !errors.Is(perr, flag.ErrHelp) || !bytes.Contains(usage, []byte("-inference-token-file")) {
		t.Fatalf("could not read the usage (%v): %s", perr, usage)
	}
	for _, line := range strings.Split(string(usage), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "-") {
			continue
		}
		if name := f[0]; strings.Contains(name, "token") && !strings.HasSuffix(name, "-file") {
			t.Errorf("flag %s takes a token on the command line", name)
		}
	}
}

func TestSecurityFlags(t *testing.T) {
	bad := [][]string{
		{"--tls-cert", "c.pem"},
		{"--tls-key", "k.pem"},
		{"--tls-client-ca", "ca.pem"},
		{"--metrics-tls"},
		{"--" + guard.LimitTensorElements, "0"},
		{"--" + guard.LimitInputs, "-1"},
		{"--" + guard.LimitBytesElement, "0"},
		{"--grpc-max-concurrent-streams", "0"},
		{"--" + guard.LimitConnections, "-1"},
		{"--http-read-header-timeout", "0s"},
		{"--" + guard.LimitRate, "-1"},
		{"--rate-burst", "5"},
		{"--tls-reload-interval", "0s"},
	}
	for _, args := range bad {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if _, err := parseOptions(args); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.sec.maxConnections != 10000 || o.sec.maxInputs != guard.DefaultMaxInputs || o.sec.rateLimit != 0 {
		t.Errorf("defaults %+v", o.sec)
	}
	for _, missing := range [][]string{
		{"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"},
		{"--inference-token-file", "/nonexistent/tokens"},
	} {
		o, err := parseOptions(missing)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newSecurity(o, "", zap.NewNop()); err == nil {
			t.Errorf("%v: a missing file was accepted", missing)
		}
	}
	dir := t.TempDir()
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(two, []byte("first\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken(two); err == nil {
		t.Error("an admin token file of two lines was accepted")
	}
	one := filepath.Join(dir, "one")
	if err := os.WriteFile(one, []byte("# the admin token\n  s3cret  \n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := readToken(one); err != nil || tok != "s3cret" {
		t.Errorf("readToken = %q, %v; want s3cret", tok, err)
	}
	empty := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(empty, []byte("# nothing\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := parseOptions([]string{"--inference-token-file", empty}); err != nil {
		t.Fatal(err)
	} else if _, err := newSecurity(o, "", zap.NewNop()); err == nil {
		t.Error("a token file without tokens was accepted")
	}
}

// TestLimitsEndToEnd: decoding limits and the rate limit answer with the
// limit's name on both protocols, and one rate limiter covers both.
func TestLimitsEndToEnd(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--"+guard.LimitInputs, "1", "--"+guard.LimitRate, "0.001", "--rate-burst", "3")
	c := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", simpleBody(seq(0, 16), seq(0, 16)), &r); code != http.StatusRequestEntityTooLarge || !strings.Contains(r.Error, guard.LimitInputs) {
		t.Errorf("HTTP over max-inputs: %d %q", code, r.Error)
	}
	_, err := c.ModelInfer(ctxTimeout(t), simpleGRPC())
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), guard.LimitInputs) {
		t.Errorf("gRPC over max-inputs: %v", err)
	}
	// Both requests above spent a token from the loopback client's burst
	// of 3: one more passes the limiter, then both protocols are refused.
	one := `{"inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":[` + strings.Repeat("0,", 63) + `0]}]}`
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", one, &r); code != http.StatusOK {
		t.Fatalf("third request: %d %s", code, r.Error)
	}
	r = inferResponse{}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", one, &r); code != http.StatusTooManyRequests || !strings.Contains(r.Error, guard.LimitRate) {
		t.Errorf("HTTP over the rate limit: %d %q", code, r.Error)
	}
	_, err = c.ModelInfer(ctxTimeout(t), simpleGRPC())
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), guard.LimitRate) {
		t.Errorf("gRPC over the rate limit: %v", err)
	}
	if code := do(t, "GET", ts.http+"/v2/health/ready", "", nil); code != http.StatusOK {
		t.Errorf("health after the rate limit: %d", code)
	}
}

// TestLoadAPIConfinement: the load API never reaches outside the
// repository, whatever the name or a symbolic link says, and a bad config
// override is a 400 naming the field.
func TestLoadAPIConfinement(t *testing.T) {
	repo := copyRepo(t)
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(repo, "simple", "1", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "1", "model.onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(repo, "escape")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo, "--model-control-mode", "explicit", "--load-model", "simple")

	post := func(rawPath, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ts.http+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = rawPath // sent exactly as written
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// A name that cannot be a folder name is a bad request; a hidden
	// folder is no model; a model folder linking out of the repository is
	// never loaded and says why, without the host paths.
	names := []struct {
		name string
		code int
	}{
		{"escape", http.StatusServiceUnavailable},
		{"..", http.StatusBadRequest},
		{"%2e%2e", http.StatusBadRequest},
		{"%2E%2E", http.StatusBadRequest},
		{".", http.StatusBadRequest},
		{"%2e", http.StatusBadRequest},
		{"..%2F..%2Fetc", http.StatusBadRequest},
		{"%2F", http.StatusBadRequest},
		{"..%5Csimple", http.StatusBadRequest},
		{"%00", http.StatusBadRequest},
		{"simple%2F..%2F..%2Fescape", http.StatusBadRequest},
		{".hidden", http.StatusNotFound},
	}
	for _, n := range names {
		t.Run("load "+n.name, func(t *testing.T) {
			code, body := post("/v2/repository/models/"+n.name+"/load", "")
			if code != n.code {
				t.Fatalf("status %d, want %d: %s", code, n.code, body)
			}
			if strings.Contains(body, outside) || strings.Contains(body, repo) {
				t.Fatalf("answer leaks a host path: %s", body)
			}
		})
	}
	for _, name := range []string{"../simple", "escape", "..", "simple/../escape"} {
		c := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
		_, err := c.RepositoryModelLoad(ctxTimeout(t), &inference.RepositoryModelLoadRequest{ModelName: name})
		if code := status.Code(err); code == codes.OK || code == codes.Internal {
			t.Errorf("gRPC load %q: %v", name, err)
		}
		if err != nil && (strings.Contains(err.Error(), outside) || strings.Contains(err.Error(), repo)) {
			t.Errorf("gRPC load %q leaks a host path: %v", name, err)
		}
	}
	// Nothing outside the root was loaded.
	var idx []map[string]string
	if code := do(t, "POST", ts.http+"/v2/repository/index", "", &idx); code != 200 {
		t.Fatalf("index: %d", code)
	}
	for _, e := range idx {
		if e["name"] != "simple" && e["state"] == "READY" {
			t.Errorf("index shows %v", e)
		}
	}
	overrides := []struct{ name, config, field string }{
		{"negative batch", "max_batch_size: -1", "max_batch_size"},
		{"unknown key", "instances: {count: 1, gpus: 2}", "instances.gpus"},
		{"not yaml", "max_batch_size: [", "YAML"},
		{"wrong type", "dynamic_batching: {max_queue_delay: 500}", "dynamic_batching.max_queue_delay"},
	}
	for _, o := range overrides {
		t.Run("override "+o.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"parameters": map[string]string{"config": o.config}})
			code, answer := post("/v2/repository/models/simple/load", string(body))
			if code != http.StatusBadRequest || !strings.Contains(answer, o.field) {
				t.Fatalf("status %d: %s", code, answer)
			}
		})
	}
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", simpleBody(seq(0, 16), seq(0, 16)), &r); code != 200 {
		t.Fatalf("simple after refused loads: %d %s", code, r.Error)
	}
}

// TestIndexHidesHostPaths: a model that fails to load reports why in the
// index, relative to the repository, without the host's paths; the log
// keeps the full path.
func TestIndexHidesHostPaths(t *testing.T) {
	repo := copyRepo(t)
	if err := os.MkdirAll(filepath.Join(repo, "corrupt", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "corrupt", "1", "model.onnx"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	// Readiness waits for every startup model, the corrupt one too: poll
	// the index instead.
	ts := startLogged(t, zap.New(core), repo)
	var reason string
	deadline := time.Now().Add(testTimeout)
	for reason == "" {
		var idx []map[string]string
		do(t, "POST", ts.http+"/v2/repository/index", "", &idx)
		for _, e := range idx {
			if e["name"] == "corrupt" && e["state"] == "UNAVAILABLE" {
				reason = e["reason"]
			}
		}
		if reason == "" && time.Now().After(deadline) {
			t.Fatalf("corrupt model never reported: %v", idx)
		}
	}
	real, _ := filepath.EvalSymlinks(repo)
	if strings.Contains(reason, repo) || strings.Contains(reason, real) || strings.Contains(reason, "/tmp") || !strings.Contains(reason, "corrupt/1/model.onnx") {
		t.Errorf("HTTP index reason %q", reason)
	}
	c := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	idx, err := c.RepositoryIndex(ctxTimeout(t), &inference.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.GetModels() {
		if m.GetName() == "corrupt" && m.GetReason() != reason {
			t.Errorf("gRPC index reason %q, HTTP %q", m.GetReason(), reason)
		}
	}
	found := false
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), filepath.Join(repo, "corrupt")) {
			found = true
		}
	}
	if !found {
		t.Error("the log lost the full path of the failing model")
	}
}
