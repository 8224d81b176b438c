package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startBinary runs the server binary on free ports with state dir state
// and returns a client for it; the process is killed with SIGKILL at
// cleanup unless kill ran first.
func startBinary(t *testing.T, bin, repo, state string) (c *qclient, kill func()) {
	t.Helper()
	cmd := exec.Command(bin, "--model-repository", repo, "--http-address", "127.0.0.1", "--http-port", "0",
		"--grpc-address", "127.0.0.1", "--grpc-port", "0", "--metrics-address", "127.0.0.1", "--metrics-port", "0",
		"--state-dir", state)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var entry struct{ Msg, HTTP string }
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "listening" {
				addr <- entry.HTTP
			}
		}
		_ = cmd.Wait()
	}()
	kill = func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(kill)
	select {
	case a := <-addr:
		ts := &testServer{http: "http://" + a}
		ts.waitReady(t)
		return &qclient{t: t, base: ts.http}, kill
	case <-time.After(testTimeout):
		t.Fatal("server never logged its addresses")
	}
	return nil, nil
}

// TestQualityStoreSurvivesKill kills the server with SIGKILL after its
// predictions are committed (a quality report is a commit barrier), and
// checks a new process on the same state dir matches their feedback.
func TestQualityStoreSurvivesKill(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	repo, state := copyRepo(t), t.TempDir()
	c, kill := startBinary(t, bin, repo, state)
	rows, _ := readLabelled(t, repo)
	var items []fbItem
	for i, r := range rows[:20] {
		id := fmt.Sprint("k", i)
		c.inferHTTP("classifier", "2", id, [][]float32{r.Features})
		items = append(items, fbItem{ID: id, GroundTruth: r.Label})
	}
	var rep map[string]any
	getJSON(t, c.base+"/v2/models/classifier/quality", &rep)
	kill()

	c, _ = startBinary(t, bin, repo, state)
	items = append(items, fbItem{ID: "k0", GroundTruth: rows[0].Label})
	got := c.feedbackHTTP("classifier", items)
	want := strings.Repeat("matched,", 20) + "duplicate"
	if strings.Join(got, ",") != want {
		t.Errorf("after kill -9: %v, want %s", got, want)
	}
}
