package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

func TestMaxConnectionsFor(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{
		{0, 1},
		{64, 1},
		{256, (256 - 32 - 64) / 2},
		{1024, (1024 - 128 - 64) / 2},
		{20000, (20000 - 2500 - 64) / 2},
		{1 << 20, ((1 << 20) - (1 << 17) - 64) / 2},
		{^uint64(0), ((1<<31 - 1) - (1<<31-1)/8 - 64) / 2},
	} {
		t.Run(fmt.Sprint(c.nofile), func(t *testing.T) {
			if got := maxConnectionsFor(c.nofile); got != c.want {
				t.Fatalf("maxConnectionsFor(%d) = %d, want %d", c.nofile, got, c.want)
			}
		})
	}
}

// process is the server binary running as a child process.
type process struct {
	cmd                 *exec.Cmd
	http, grpc, metrics string // host:port
	maxConnections      int
	exited              chan error // the exit, once
	mu                  sync.Mutex
	logs                strings.Builder
}

// startProcess runs the server binary bin, prefixed by wrap (e.g.
// prlimit), on free loopback ports with extra flags, and waits until it is
// ready. The process is killed at the end of the test.
func startProcess(t *testing.T, bin string, wrap []string, repo string, extra ...string) *process {
	t.Helper()
	args := append(append(append([]string{}, wrap...), bin, "--model-repository", repo,
		"--http-address", "127.0.0.1", "--http-port", "0", "--grpc-address", "127.0.0.1", "--grpc-port", "0",
		"--metrics-address", "127.0.0.1", "--metrics-port", "0", "--shutdown-delay", "0s", "--state-dir", t.TempDir()), extra...)
	p := &process{cmd: exec.Command(args[0], args[1:]...), exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var entry struct {
				Msg            string `json:"msg"`
				HTTP           string `json:"http"`
				GRPC           string `json:"grpc"`
				Metrics        string `json:"metrics"`
				MaxConnections int    `json:"max-connections"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				once.Do(func() {
					p.http, p.grpc, p.metrics, p.maxConnections = entry.HTTP, entry.GRPC, entry.Metrics, entry.MaxConnections
					close(listening)
				})
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	select {
	case <-listening:
	case err := <-p.exited:
		t.Fatalf("server exited before listening: %v\n%s", err, p.log())
	case <-time.After(testTimeout):
		t.Fatalf("server never logged its addresses\n%s", p.log())
	}
	(&testServer{http: "http://" + p.http}).waitReady(t)
	return p
}

// log returns what the process logged so far.
func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog waits until the process logged a line containing s.
func (p *process) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(testTimeout)
	for !strings.Contains(p.log(), s) {
		select {
		case err := <-p.exited:
			t.Fatalf("server exited (%v) before logging %q\n%s", err, s, p.log())
		case <-deadline:
			t.Fatalf("server never logged %q\n%s", s, p.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestDescriptorExhaustion runs the binary under a low descriptor limit
// and opens idle connections to both ports until the process has no
// descriptor left: it must stay up, say so in its log (once, not per
// connection), and serve again once the connections close. Before, the
// HTTP front end took accept4's EMFILE as fatal and the process exited 1.
func TestDescriptorExhaustion(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	const nofile = 256
	wrap := []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	repo := copyRepo(t)

	t.Run("default limit", func(t *testing.T) {
		p := startProcess(t, bin, wrap, repo)
		if want := maxConnectionsFor(nofile); p.maxConnections != want {
			t.Fatalf("--%s defaults to %d under a limit of %d descriptors, want %d", guard.LimitConnections, p.maxConnections, nofile, want)
		}
	})

	t.Run("no connection limit", func(t *testing.T) {
		p := startProcess(t, bin, wrap, repo, "--"+guard.LimitConnections, "0", "--http-read-header-timeout", "60s")
		var idle []net.Conn
		defer func() {
			for _, c := range idle {
				_ = c.Close()
			}
		}()
		// More idle connections than the process has descriptors: the
		// kernel queues those it cannot accept.
		for i := range 2 * nofile {
			addr := p.http
			if i%2 == 1 {
				addr = p.grpc
			}
			c, err := net.DialTimeout("tcp", addr, testTimeout)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			idle = append(idle, c)
		}
		p.waitLog(t, "out of file descriptors")
		for _, c := range idle {
			_ = c.Close()
		}
		idle = nil
		client := &http.Client{Timeout: testTimeout}
		deadline := time.Now().Add(testTimeout)
		for {
			resp, err := client.Post("http://"+p.http+"/v2/models/simple/infer", "application/json", strings.NewReader(simpleBody(seq(0, 16), seq(1, 16))))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("not serving again after the idle connections closed (%v)\n%s", err, p.log())
			}
			select {
			case err := <-p.exited:
				t.Fatalf("server exited: %v\n%s", err, p.log())
			case <-time.After(20 * time.Millisecond):
			}
		}
		select {
		case err := <-p.exited:
			t.Fatalf("server exited: %v\n%s", err, p.log())
		default:
		}
		if n := strings.Count(p.log(), "out of file descriptors"); n > 2*int(testTimeout/time.Second) {
			t.Errorf("the descriptor shortage was logged %d times; want at most once a second per port", n)
		}
	})
}
