package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// buildServer compiles the server binary into a test's temporary folder.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "onnxserve")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestGracefulShutdown runs the real binary, keeps clients busy, sends
// SIGTERM and checks the order of events: readiness turns false at once,
// requests keep being answered through the shutdown delay, nothing admitted
// is lost, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	cmd := exec.Command(bin, "--model-repository", copyRepo(t), "--http-address", "127.0.0.1", "--http-port", "0",
		"--grpc-address", "127.0.0.1", "--grpc-port", "0", "--metrics-address", "127.0.0.1", "--metrics-port", "0",
		"--shutdown-delay", "1s", "--drain-timeout", "10s", "--state-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan string, 1)
	addr := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			all.WriteString(line + "\n")
			var entry struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				addr <- entry.HTTP
			}
		}
		logs <- all.String()
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(testTimeout):
		t.Fatal("server never logged its addresses")
	}
	ts := &testServer{http: base}
	ts.waitReady(t)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: testTimeout}
	var ok, refused, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(base+"/v2/models/classifier/infer", "application/json", strings.NewReader(classifierBody(w*1000+i)))
				if err != nil {
					refused.Add(1) // not admitted: the listener is closed
					time.Sleep(5 * time.Millisecond)
					continue
				}
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rerr != nil:
					bad.Add(1)
					t.Errorf("response cut short: %v", rerr)
				case resp.StatusCode == 200:
					var r inferResponse
					if json.Unmarshal(body, &r) != nil || len(r.Outputs) != 1 {
						bad.Add(1)
						t.Errorf("malformed answer %q", body)
					}
					ok.Add(1)
				case resp.StatusCode == 503:
					// refused cleanly while shutting down
				default:
					bad.Add(1)
					t.Errorf("status %d during shutdown: %s", resp.StatusCode, body)
				}
			}
		}()
	}
	waitCount(t, &ok, 50)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sigterm := ok.Load()
	// Readiness turns false while requests are still answered.
	deadline := time.Now().Add(testTimeout)
	for {
		resp, err := client.Get(base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("readiness did not turn false after SIGTERM (err %v)", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitCount(t, &ok, sigterm+20) // still serving during the shutdown delay

	select {
	case err := <-exited:
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("server exited with %v; logs:\n%s", err, <-logs)
		}
	case <-time.After(testTimeout):
		close(stop)
		wg.Wait()
		t.Fatal("server did not exit after SIGTERM")
	}
	all := <-logs
	for _, want := range []string{"shutting down: readiness off", "shutdown complete"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if bad.Load() != 0 {
		t.Fatalf("%d requests were lost or mangled", bad.Load())
	}
	t.Logf("answered %d requests (%d after SIGTERM); %d refused at connect after the listener closed", ok.Load(), ok.Load()-sigterm, refused.Load())
}

func waitCount(t *testing.T, c *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for c.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests answered, waiting for %d", c.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeepAliveShutdownLosesNothing keeps 32 keep-alive HTTP clients busy
// through a shutdown, four times: no request a client has written is left
// without an answer. During the shutdown delay every answer closes its
// connection, so no request is written into a connection the server is
// about to close; the accept queue is emptied before the listener closes,
// and once it is closed a client's dial is refused before it writes
// anything. Before, a few requests in each stop were reset unanswered.
func TestKeepAliveShutdownLosesNothing(t *testing.T) {
	requireORT(t)
	repo := copyRepo(t)
	body := simpleBody(seq(0, 16), seq(0, 16))
	for round := range 4 {
		ts := startServer(t, repo, "--shutdown-delay", "300ms")
		var answered, refused atomic.Int64
		var mu sync.Mutex
		var lost []string
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// One connection per client, reused while the server
				// keeps it open.
				client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
				defer client.CloseIdleConnections()
				for {
					var wrote, reused atomic.Bool
					ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
						GotConn:      func(i httptrace.GotConnInfo) { reused.Store(i.Reused) },
						WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) }})
					req, err := http.NewRequestWithContext(ctx, "POST", ts.http+"/v2/models/simple/infer", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					resp, err := client.Do(req)
					if err != nil {
						if wrote.Load() {
							mu.Lock()
							lost = append(lost, fmt.Sprintf("reused %v: %v", reused.Load(), err))
							mu.Unlock()
							continue
						}
						refused.Add(1)
						return // the listener is closed: the server has gone
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("status %d", resp.StatusCode)
						return
					}
					answered.Add(1)
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		ts.shutdown(t)
		wg.Wait()
		if len(lost) > 0 {
			t.Errorf("round %d: %d written requests got no answer (of %d answered), e.g. %s", round, len(lost), answered.Load(), lost[0])
		}
		if answered.Load() == 0 || refused.Load() != 32 {
			t.Errorf("round %d: %d answered, %d clients refused at the end; want answers and all 32 refused", round, answered.Load(), refused.Load())
		}
		t.Logf("round %d: %d answered, none lost", round, answered.Load())
	}
}
