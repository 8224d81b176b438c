package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds of the server's lifecycle.
const (
	startTimeout = 2 * time.Minute
	stopTimeout  = 15 * time.Second
)

// server is one onnxserve process started by the suite. It is used by one
// goroutine.
type server struct {
	cmd     *exec.Cmd
	pid     int
	http    string // host:port
	grpc    string
	metrics string
	exited  chan struct{}
	waitErr error
}

// pinned returns a command that runs name with args on the given CPU, via
// taskset. taskset executes the program in place, so the process id is the
// program's own and /proc/<pid>/stat measures it alone. The child is
// killed if the suite dies without stopping it.
func pinned(ctx context.Context, cpu int, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", strconv.Itoa(cpu), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopTimeout
	return cmd
}

// startServer starts bin on cpu serving repo, every port on 127.0.0.1 and
// chosen by the kernel, and returns once every model in models is ready.
// The server's log goes to logPath, and its --state-dir is an empty folder
// beside it named after it.
func startServer(ctx context.Context, bin string, cpu int, repo, logPath string, models []string, extra ...string) (*server, error) {
	// Models with a monitoring block keep their predictions in a state
	// folder of this server's own, beside its log, emptied first: a store
	// left by an earlier run would make this one's larger and slower.
	stateDir := strings.TrimSuffix(logPath, filepath.Ext(logPath)) + ".state"
	if err := os.RemoveAll(stateDir); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--model-repository", repo,
		"--http-address", "127.0.0.1", "--http-port", "0",
		"--grpc-address", "127.0.0.1", "--grpc-port", "0",
		"--metrics-address", "127.0.0.1", "--metrics-port", "0",
		"--shutdown-delay", "0s", "--drain-timeout", "5s",
		"--state-dir", stateDir,
	}, extra...)
	// The server is not bound to ctx: stop is the one way it ends, so its
	// shutdown is always waited for.
	cmd := pinned(context.Background(), cpu, bin, args...)
	cmd.Stdout = logf
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	addrs := make(chan listening, 1)
	go func() {
		// Copy the log, watching for the line that names the ports.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			if !sent {
				var l listening
				if json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
					addrs <- l
					sent = true
				}
			}
		}
		_, _ = io.Copy(logf, stderr)
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	fail := func(err error) (*server, error) {
		s.stop()
		return nil, fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case l := <-addrs:
		s.http, s.grpc, s.metrics = l.HTTP, l.GRPC, l.Metrics
	case <-s.exited:
		return fail(fmt.Errorf("server exited before listening: %v", s.waitErr))
	case <-timer.C:
		return fail(errors.New("server did not report its ports in time"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, m := range models {
		if err := s.waitReady(ctx, client, m, timer.C); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// listening is the server's log line naming its addresses.
type listening struct {
	Msg     string `json:"msg"`
	HTTP    string `json:"http"`
	GRPC    string `json:"grpc"`
	Metrics string `json:"metrics"`
}

// readyPoll is the interval between readiness checks at startup.
const readyPoll = 100 * time.Millisecond

func (s *server) waitReady(ctx context.Context, client *http.Client, model string, deadline <-chan time.Time) error {
	url := "http://" + s.http + "/v2/models/" + model + "/ready"
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-s.exited:
			return fmt.Errorf("server exited while %s was loading: %v", model, s.waitErr)
		case <-deadline:
			return fmt.Errorf("model %s not ready in %s", model, startTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stop asks the server to shut down and kills it if it does not exit in
// time. It is safe to call more than once.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// cpu returns the server's CPU time so far.
func (s *server) cpu() (time.Duration, error) { return procCPU(s.pid) }
