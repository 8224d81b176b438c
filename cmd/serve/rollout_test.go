package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/drift"
	"github.com/onnxserve/onnxserve/internal/onnxgen"
	inference "github.com/onnxserve/onnxserve/proto"
)

// rolloutConfig serves both versions of "classifier" so a rollout can move
// traffic between them; each test overrides the policy in its request.
const rolloutConfig = `max_batch_size: 32
dynamic_batching:
  max_queue_delay: 1ms
  preferred_batch_sizes: [8, 16, 32]
version_policy:
  all: true
rollout:
  steps: [20, 50, 100]
  step_interval: 400ms
  min_requests: 40
  gates:
    max_error_rate: 0.01
`

// rolloutRepo is a repository whose classifier has version 1 (the
// bundled one) and version 2, the candidate given.
func rolloutRepo(t *testing.T, candidate []byte) string {
	t.Helper()
	repo := t.TempDir()
	for rel, data := range map[string][]byte{
		"classifier/config.yaml":  []byte(rolloutConfig),
		"classifier/1/model.onnx": onnxgen.Classifier(1),
		"classifier/2/model.onnx": candidate,
	} {
		p := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// rolloutDoc is what GET /v2/models/{m}/rollout answers.
type rolloutDoc struct {
	Candidate, Baseline, Phase, Reason string
	Step, Percent                      int
	Weights                            map[string]int
	Window                             struct {
		CandidateRequests int64 `json:"candidate_requests"`
	}
	History []struct {
		From, To, Reason, Detail string
		Step, Percent            int
		Gates                    []struct {
			Name         string
			Value        float64
			Threshold    float64
			Judged, Pass bool
		}
	}
	Error string
}

func startRollout(t *testing.T, ts *testServer, body string) rolloutDoc {
	t.Helper()
	var d rolloutDoc
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout", body, &d); code != 200 {
		t.Fatalf("POST rollout %s: %d %s", body, code, d.Error)
	}
	return d
}

func getRollout(t *testing.T, ts *testServer) rolloutDoc {
	t.Helper()
	var d rolloutDoc
	if code := do(t, "GET", ts.http+"/v2/models/classifier/rollout", "", &d); code != 200 {
		t.Fatalf("GET rollout: %d %s", code, d.Error)
	}
	return d
}

// waitPhase polls the rollout until it reaches one of phases.
func waitPhase(t *testing.T, ts *testServer, phases ...string) rolloutDoc {
	t.Helper()
	deadline := time.After(2 * testTimeout)
	for {
		d := getRollout(t, ts)
		for _, p := range phases {
			if d.Phase == p {
				return d
			}
		}
		select {
		case <-deadline:
			t.Fatalf("rollout still %s at %d%% (window %d requests), want %v", d.Phase, d.Percent, d.Window.CandidateRequests, phases)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// load drives unversioned classifier requests over HTTP and gRPC at once
// and counts, client-side, every answer by protocol, status and version.
type load struct {
	mu       sync.Mutex
	answered map[string]int // protocol → answers (any status)
	codes    map[string]int // "protocol code" → answers
	versions map[string]int // version → successful answers
	// keyed maps each sticky key the HTTP clients send to the versions
	// that answered it, in order; one client sends each key, one request
	// at a time.
	keyed map[string][]string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// rowFeatures is request i's row: its first feature runs through
// 0.00..0.99, so 5 rows in 100 reach onnxgen.PickyFeatureLimit.
func rowFeatures(i int) []float32 {
	f := make([]float32, onnxgen.ClassifierFeatures)
	for j := range f {
		f[j] = float32((j*7+i)%13) / 13
	}
	f[0] = float32((i*37)%100) / 100
	return f
}

func startLoad(t *testing.T, ts *testServer, clients int) *load {
	return startLoadWith(t, ts, clients, nil)
}

// startLoadWith is startLoad with feedback: when truth is not nil, request
// i sends input i%len(truth) under the id "c<client>-<i>", and each success
// is followed by its ground truth, truth[i%len(truth)], posted to the
// feedback endpoint.
func startLoadWith(t *testing.T, ts *testServer, clients int, truth []int) *load {
	l := &load{answered: map[string]int{}, codes: map[string]int{}, versions: map[string]int{}, keyed: map[string][]string{}, stop: make(chan struct{})}
	grpcc := grpcClient(t, ts.a.grpcLn.Addr().String(), insecure.NewCredentials())
	httpc := &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := c * 100_003; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				f := rowFeatures(i)
				id := fmt.Sprintf("c%d-%d", c, i)
				if truth != nil {
					f = rowFeatures(i % len(truth))
				}
				feedback := func() {
					if truth == nil {
						return
					}
					body := fmt.Sprintf(`{"id":%q,"ground_truth":%d}`, id, truth[i%len(truth)])
					resp, err := httpc.Post(ts.http+"/v2/models/classifier/feedback", "application/json", strings.NewReader(body))
					if err != nil {
						t.Errorf("feedback: %v", err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("feedback %s: %d", body, resp.StatusCode)
					}
				}
				if c%2 == 0 {
					feat := make([]string, len(f))
					for j, x := range f {
						feat[j] = fmt.Sprint(x)
					}
					body := `{"id":"` + id + `","inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(feat, ",") + `]}]}`
					req, err := http.NewRequest("POST", ts.http+"/v2/models/classifier/infer", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					key := fmt.Sprintf("client-%d-key-%d", c, i%25)
					req.Header.Set("x-routing-key", key)
					resp, err := httpc.Do(req)
					if err != nil {
						t.Errorf("http client %d: %v", c, err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					var r inferResponse
					_ = json.Unmarshal(b, &r)
					l.count("http", resp.StatusCode, r.ModelVersion)
					if resp.StatusCode == http.StatusOK {
						feedback()
						l.mu.Lock()
						l.keyed[key] = append(l.keyed[key], r.ModelVersion)
						l.mu.Unlock()
					}
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				resp, err := grpcc.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "classifier", Id: id, Inputs: []*inference.ModelInferRequest_InferInputTensor{{
					Name: "INPUT", Datatype: "FP32", Shape: []int64{1, 64}, Contents: &inference.InferTensorContents{Fp32Contents: f}}}})
				cancel()
				if err != nil {
					st, _ := status.FromError(err)
					l.count("grpc", int(st.Code()), "")
					continue
				}
				l.count("grpc", 0, resp.ModelVersion)
				feedback()
			}
		}()
	}
	return l
}

func (l *load) count(protocol string, code int, version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answered[protocol]++
	l.codes[fmt.Sprintf("%s %d", protocol, code)]++
	if version != "" {
		l.versions[version]++
	}
}

// finish stops the load and checks that every request sent was answered
// exactly once: the server's request counters equal the client's counts.
func (l *load) finish(t *testing.T, ts *testServer) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	fams := scrape(t, ts)
	for _, p := range []string{"http", "grpc"} {
		got := counterValue(t, fams, "onnxserve_requests_total", map[string]string{"model": "classifier", "protocol": p})
		if int(got) != l.answered[p] {
			t.Errorf("%s: the server counted %v requests, the clients got %d answers", p, got, l.answered[p])
		}
		if l.answered[p] == 0 {
			t.Errorf("%s: no request sent", p)
		}
	}
	t.Logf("answers by protocol and status: %v; successful answers by version: %v", l.codes, l.versions)
}

// finishRemoved is finish for a test that removes a version: the series
// of a removed version go with it, so the server's count of the version
// that stays must equal the clients' answers from it, and every answer
// must be a success.
func (l *load) finishRemoved(t *testing.T, ts *testServer, kept string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	fams := scrape(t, ts)
	got := counterValue(t, fams, "onnxserve_requests_total", map[string]string{"model": "classifier", "version": kept})
	if int(got) != l.versions[kept] {
		t.Errorf("version %s: the server counted %v requests, the clients got %d answers from it", kept, got, l.versions[kept])
	}
	if n := l.codes["http 200"] + l.codes["grpc 0"]; n != l.answered["http"]+l.answered["grpc"] || n == 0 {
		t.Errorf("answers by protocol and status %v: want every one a success", l.codes)
	}
	t.Logf("answers by protocol and status: %v; successful answers by version: %v", l.codes, l.versions)
}

// lastDecision returns the rollout's final decision.
func lastDecision(t *testing.T, d rolloutDoc) (to, reason string, step int) {
	t.Helper()
	if len(d.History) == 0 {
		t.Fatal("the rollout has no history")
	}
	h := d.History[len(d.History)-1]
	return h.To, h.Reason, h.Step
}

// servedOnly sends n unversioned requests and fails unless version v
// answered every one.
func servedOnly(t *testing.T, ts *testServer, v string, n int) {
	t.Helper()
	got := countServed(t, ts, n)
	if got[v] != n {
		t.Errorf("after the rollout, unversioned requests were served by %v, want all %d by version %s", got, n, v)
	}
}

// TestRolloutRejectingCandidateRolledBack: a candidate that rejects about
// 5% of the inputs the baseline accepts fails the max_error_rate gate at
// its first step, as soon as the window holds min_requests, and the
// baseline takes all traffic back.
func TestRolloutRejectingCandidateRolledBack(t *testing.T) {
	ts := startServer(t, rolloutRepo(t, onnxgen.ClassifierPicky(2)), "--rollout-tick", "20ms")
	l := startLoad(t, ts, 8)
	// A long step: only a gate can end it within the test.
	d := startRollout(t, ts, `{"candidate":"2","steps":[20,100],"step_interval":"1h","min_requests":200}`)
	if d.Baseline != "1" || d.Phase != "progressing" || d.Percent != 20 {
		t.Fatalf("started as %+v, want baseline 1 progressing at 20%%", d)
	}
	d = waitPhase(t, ts, "rolled_back", "promoted", "held")
	l.finish(t, ts)
	to, reason, step := lastDecision(t, d)
	if to != "rolled_back" || reason != "max_error_rate" || step != 0 {
		t.Fatalf("ended %s by %q at step %d (%s), want rolled_back by max_error_rate at step 0", to, reason, step, d.Reason)
	}
	if d.Window.CandidateRequests < 200 {
		t.Errorf("judged on %d candidate requests, before min_requests 200", d.Window.CandidateRequests)
	}
	if d.Weights["2"] != 0 || d.Weights["1"] != 100 {
		t.Errorf("weights after the rollback %v, want 1:100 2:0", d.Weights)
	}
	if l.codes["http 400"]+l.codes["grpc 3"] == 0 {
		t.Error("no request was rejected: the candidate never served")
	}
	servedOnly(t, ts, "1", 20)
	fams := scrape(t, ts)
	if v := counterValue(t, fams, "onnxserve_rollout_transitions_total", map[string]string{"model": "classifier", "from": "progressing", "to": "rolled_back", "reason": "max_error_rate"}); v != 1 {
		t.Errorf("rollout transitions to rolled_back by max_error_rate: %v, want 1", v)
	}
	if v := counterValue(t, fams, "onnxserve_rollout_state", map[string]string{"model": "classifier", "state": "rolled_back"}); v != 1 {
		t.Errorf("onnxserve_rollout_state{state=rolled_back} = %v, want 1", v)
	}
	if v := counterValue(t, fams, "onnxserve_rollout_percent", map[string]string{"model": "classifier", "version": "2"}); v != 0 {
		t.Errorf("onnxserve_rollout_percent{version=2} = %v, want 0", v)
	}
}

// TestRolloutSlowCandidateRolledBack: a candidate many times slower (a
// heavy branch whose answer is the same) fails the p99 gate.
func TestRolloutSlowCandidateRolledBack(t *testing.T) {
	ts := startServer(t, rolloutRepo(t, onnxgen.ClassifierHeavy(1)), "--rollout-tick", "20ms")
	l := startLoad(t, ts, 8)
	startRollout(t, ts, `{"candidate":"2","steps":[50,100],"step_interval":"1h","min_requests":100,"gates":{"max_p99_ratio":1.5}}`)
	d := waitPhase(t, ts, "rolled_back", "promoted", "held")
	l.finish(t, ts)
	to, reason, step := lastDecision(t, d)
	if to != "rolled_back" || reason != "max_p99_ratio" || step != 0 {
		t.Fatalf("ended %s by %q at step %d (%s), want rolled_back by max_p99_ratio at step 0", to, reason, step, d.Reason)
	}
	for _, g := range d.History[len(d.History)-1].Gates {
		t.Logf("gate %s: %.3g against %.3g", g.Name, g.Value, g.Threshold)
	}
	servedOnly(t, ts, "1", 10)
}

// TestRolloutGoodCandidatePromoted: a candidate as good as the baseline
// walks every step and is promoted; the newest version then takes all.
func TestRolloutGoodCandidatePromoted(t *testing.T) {
	ts := startServer(t, rolloutRepo(t, onnxgen.Classifier(2)), "--rollout-tick", "20ms")
	startRollout(t, ts, `{"candidate":"2","steps":[10,50,100],"step_interval":"300ms","min_requests":30,
		"gates":{"max_error_rate":0.01,"max_error_rate_delta":0.01}}`)
	l := startLoad(t, ts, 8)
	d := waitPhase(t, ts, "rolled_back", "promoted", "held")
	l.finish(t, ts)
	if d.Phase != "promoted" {
		t.Fatalf("ended %s: %s", d.Phase, d.Reason)
	}
	var percents []int
	for _, h := range d.History {
		if h.To == "progressing" {
			percents = append(percents, h.Percent)
		}
	}
	if fmt.Sprint(percents) != "[10 50 100]" {
		t.Errorf("steps walked %v, want [10 50 100]", percents)
	}
	if l.versions["1"] == 0 || l.versions["2"] == 0 {
		t.Errorf("answers by version %v: both should have served during the rollout", l.versions)
	}
	// Sticky keys: a key the candidate took never goes back to the
	// baseline while its share grows; only the keys that must move, move.
	moved := 0
	for key, vs := range l.keyed {
		first := slices.Index(vs, "2")
		if first < 0 {
			continue
		}
		moved++
		if slices.Contains(vs[first:], "1") {
			t.Errorf("key %s went back to the baseline after the candidate served it: %v", key, vs)
		}
	}
	if moved == 0 {
		t.Errorf("no sticky key reached the candidate (%d keys)", len(l.keyed))
	}
	servedOnly(t, ts, "2", 20)
}

// TestRolloutOperatorAndRestart: a rollout holds the traffic (PUT
// /traffic is 409 naming it, a second rollout is 409), survives a restart
// at its step with a fresh window, and ends by promote or abort.
func TestRolloutOperatorAndRestart(t *testing.T) {
	repo := rolloutRepo(t, onnxgen.Classifier(2))
	ts := startServer(t, repo, "--rollout-tick", "20ms")
	startRollout(t, ts, `{"candidate":"2","steps":[25,100],"step_interval":"1h","min_requests":5}`)
	var e struct{ Error string }
	if code := do(t, "PUT", ts.http+"/v2/models/classifier/traffic", `{"split":{"1":50,"2":50}}`, &e); code != 409 || !strings.Contains(e.Error, "rollout of version 2") {
		t.Errorf("PUT /traffic during a rollout: %d %q, want 409 naming the rollout", code, e.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout", `{"candidate":"2"}`, &e); code != 409 || !strings.Contains(e.Error, "rollout of version 2") {
		t.Errorf("second rollout: %d %q, want 409 naming the running one", code, e.Error)
	}
	l := startLoad(t, ts, 4)
	time.Sleep(200 * time.Millisecond) // some traffic during the step; nothing waits on it
	l.finish(t, ts)
	before := getRollout(t, ts)
	ts.shutdown(t)

	ts = startServer(t, repo, "--rollout-tick", "20ms")
	d := getRollout(t, ts)
	if d.Phase != "progressing" || d.Step != 0 || d.Percent != 25 {
		t.Fatalf("after a restart: %s step %d at %d%%, want progressing step 0 at 25%%", d.Phase, d.Step, d.Percent)
	}
	if to, reason, _ := lastDecision(t, d); reason != "resumed" || to != "progressing" || len(d.History) != len(before.History)+1 {
		t.Errorf("after a restart the last decision is %s %s (%d decisions, %d before), want resumed", to, reason, len(d.History), len(before.History))
	}
	if d.Window.CandidateRequests != 0 {
		t.Errorf("the resumed window holds %d requests, want a fresh one", d.Window.CandidateRequests)
	}
	if code := do(t, "PUT", ts.http+"/v2/models/classifier/traffic", `{"split":{"1":50,"2":50}}`, &e); code != 409 {
		t.Errorf("PUT /traffic after the restart: %d %q, want 409", code, e.Error)
	}
	l = startLoad(t, ts, 4)
	var p rolloutDoc
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout/promote", "", &p); code != 200 || p.Phase != "promoted" {
		t.Fatalf("promote: %d %s %s", code, p.Phase, p.Error)
	}
	l.finish(t, ts)
	servedOnly(t, ts, "2", 10)
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout/abort", "", &e); code != 409 {
		t.Errorf("abort with no rollout running: %d %q, want 409", code, e.Error)
	}

	// Abort: the baseline takes all traffic back, and the traffic API is
	// open again.
	startRollout(t, ts, `{"candidate":"2","baseline":"1","steps":[50,100],"step_interval":"1h"}`)
	var a rolloutDoc
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout/abort", "", &a); code != 200 || a.Phase != "rolled_back" {
		t.Fatalf("abort: %d %s %s", code, a.Phase, a.Error)
	}
	servedOnly(t, ts, "1", 10)
	if code := do(t, "PUT", ts.http+"/v2/models/classifier/traffic", `{"split":{"1":50,"2":50}}`, &e); code != 200 {
		t.Errorf("PUT /traffic after the rollout: %d %q", code, e.Error)
	}
}

// TestRolloutBadInput: each refused start names its field, and nothing
// changes.
func TestRolloutBadInput(t *testing.T) {
	ts := startServer(t, rolloutRepo(t, onnxgen.Classifier(2)), "--rollout-tick", "20ms")
	for _, c := range []struct{ body, want string }{
		{`{"candidate":"2","steps":[50,20,100]}`, "steps[1]"},
		{`{"candidate":"2","steps":[20,50]}`, "steps: must end at 100"},
		{`{"candidate":"7"}`, "candidate: version 7"},
		{`{}`, "candidate: required"},
		{`{"candidate":"2","gates":{"max_drift":0.2}}`, "gates.max_drift"},
		{`{"candidate":"2","gates":{"max_accuracy_drop":0.02}}`, "gates.max_accuracy_drop"},
		{`{"candidate":"2","step_interval":5}`, "step_interval"},
		{`{"candidate":"2","speed":"fast"}`, "speed: unknown field"},
	} {
		var e struct{ Error string }
		if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout", c.body, &e); code != 400 || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s: %d %q, want 400 naming %q", c.body, code, e.Error, c.want)
		}
	}
	if d := getRollout(t, ts); d.Phase != "idle" {
		t.Errorf("after refused starts the rollout is %s, want idle", d.Phase)
	}
	var e struct{ Error string }
	if code := do(t, "GET", ts.http+"/v2/models/nosuch/rollout", "", &e); code != 404 {
		t.Errorf("GET rollout of an unknown model: %d %q, want 404", code, e.Error)
	}
}

// TestRolloutCandidateRemoved: removing the candidate's folder mid-rollout
// ends the rollout as rolled back with that reason; the baseline serves.
func TestRolloutCandidateRemoved(t *testing.T) {
	repo := rolloutRepo(t, onnxgen.Classifier(2))
	ts := startServer(t, repo, "--rollout-tick", "20ms")
	startRollout(t, ts, `{"candidate":"2","steps":[50,100],"step_interval":"1h"}`)
	l := startLoad(t, ts, 4)
	if err := os.RemoveAll(filepath.Join(repo, "classifier", "2")); err != nil {
		t.Fatal(err)
	}
	d := waitPhase(t, ts, "rolled_back")
	l.finishRemoved(t, ts, "1")
	if _, reason, _ := lastDecision(t, d); reason != "candidate_removed" || !strings.Contains(d.Reason, "removed") {
		t.Errorf("ended by %q (%s), want candidate_removed", reason, d.Reason)
	}
	servedOnly(t, ts, "1", 10)
}

// TestRolloutAutomatic: with rollout.auto, a new version folder starts a
// rollout instead of taking all traffic, and a good one is promoted.
func TestRolloutAutomatic(t *testing.T) {
	repo := rolloutRepo(t, onnxgen.Classifier(2))
	cfg := strings.Replace(rolloutConfig, "rollout:\n", "rollout:\n  auto: true\n", 1)
	cfg = strings.Replace(cfg, "min_requests: 40", "min_requests: 20", 1)
	if err := os.WriteFile(filepath.Join(repo, "classifier", "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Version 2 arrives while the server runs: it is moved in whole.
	held := filepath.Join(t.TempDir(), "2")
	if err := os.Rename(filepath.Join(repo, "classifier", "2"), held); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo, "--rollout-tick", "20ms")
	l := startLoad(t, ts, 4)
	if err := os.Rename(held, filepath.Join(repo, "classifier", "2")); err != nil {
		t.Fatal(err)
	}
	d := waitPhase(t, ts, "rolled_back", "promoted", "held")
	l.finish(t, ts)
	if d.Phase != "promoted" || d.Candidate != "2" || d.Baseline != "1" {
		t.Fatalf("automatic rollout ended %s (candidate %s, baseline %s): %s", d.Phase, d.Candidate, d.Baseline, d.Reason)
	}
	if h := d.History[0]; h.Reason != "started" || h.Percent != 20 {
		t.Errorf("first decision %s at %d%%, want started at 20%%", h.Reason, h.Percent)
	}
	servedOnly(t, ts, "2", 10)
}

// TestRolloutShadowFirst: with shadow_first the candidate first gets
// mirrored copies only; one that agrees with the baseline goes on to serve,
// one that disagrees is rolled back by min_shadow_agreement.
func TestRolloutShadowFirst(t *testing.T) {
	for _, c := range []struct {
		name      string
		candidate []byte
		want      string
	}{
		{"agrees", onnxgen.Classifier(1), "promoted"},
		{"disagrees", onnxgen.Classifier(2), "rolled_back"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := startServer(t, rolloutRepo(t, c.candidate), "--rollout-tick", "20ms")
			d := startRollout(t, ts, `{"candidate":"2","shadow_first":"300ms","steps":[50,100],"step_interval":"200ms","min_requests":20,
				"gates":{"min_shadow_agreement":0.95,"max_error_rate":0.01}}`)
			if d.Phase != "shadow" || d.Percent != 0 {
				t.Fatalf("started %s at %d%%, want shadow at 0%%", d.Phase, d.Percent)
			}
			l := startLoad(t, ts, 4)
			d = waitPhase(t, ts, "rolled_back", "promoted", "held")
			l.finish(t, ts)
			if d.Phase != c.want {
				t.Fatalf("ended %s (%s), want %s", d.Phase, d.Reason, c.want)
			}
			if c.want == "rolled_back" {
				if _, reason, _ := lastDecision(t, d); reason != "min_shadow_agreement" {
					t.Errorf("rolled back by %q, want min_shadow_agreement", reason)
				}
				if l.versions["2"] != 0 {
					t.Errorf("the candidate answered %d clients during the shadow phase", l.versions["2"])
				}
			}
		})
	}
}

// TestRolloutAccuracyGate: with feedback flowing, a less accurate
// candidate is rolled back by max_accuracy_drop. The ground truth is
// version 1's answer, so the baseline is always right and the candidate
// (other weights) often wrong.
func TestRolloutAccuracyGate(t *testing.T) {
	repo := rolloutRepo(t, onnxgen.Classifier(2))
	cfg := rolloutConfig + "monitoring:\n  task: classification\n"
	if err := os.WriteFile(filepath.Join(repo, "classifier", "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo, "--rollout-tick", "20ms")
	// The ground truth of 50 inputs: version 1's argmax.
	truth := make([]int, 50)
	for i := range truth {
		f := rowFeatures(i)
		feat := make([]string, len(f))
		for j, x := range f {
			feat[j] = fmt.Sprint(x)
		}
		var r inferResponse
		body := `{"inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(feat, ",") + `]}]}`
		if code := do(t, "POST", ts.http+"/v2/models/classifier/versions/1/infer", body, &r); code != 200 {
			t.Fatalf("truth %d: %d %s", i, code, r.Error)
		}
		var probs []float64
		if err := json.Unmarshal(r.Outputs[0].Data, &probs); err != nil {
			t.Fatal(err)
		}
		for k := range probs {
			if probs[k] > probs[truth[i]] {
				truth[i] = k
			}
		}
	}
	startRollout(t, ts, `{"candidate":"2","steps":[50,100],"step_interval":"1h","min_requests":40,"gates":{"max_accuracy_drop":0.05}}`)
	l := startLoadWith(t, ts, 4, truth)
	for range truth { // the truth requests, answered by version 1 over HTTP
		l.count("http", 200, "1")
	}
	d := waitPhase(t, ts, "rolled_back", "promoted", "held")
	l.finish(t, ts)
	to, reason, step := lastDecision(t, d)
	if to != "rolled_back" || reason != "max_accuracy_drop" || step != 0 {
		t.Fatalf("ended %s by %q at step %d (%s), want rolled_back by max_accuracy_drop at step 0", to, reason, step, d.Reason)
	}
	for _, g := range d.History[len(d.History)-1].Gates {
		t.Logf("gate %s: %.3g against %.3g", g.Name, g.Value, g.Threshold)
	}
	servedOnly(t, ts, "1", 10)
}

// TestRolloutDriftGate: with a reference profile of the baseline's answers
// on the load's inputs, a candidate that answers as the baseline does walks
// every step past the max_drift gate, and one whose outputs differ (other
// weights) is rolled back by it.
func TestRolloutDriftGate(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		name      string
		candidate []byte
		want      string
	}{
		{"same outputs", onnxgen.Classifier(1), "promoted"},
		{"other outputs", onnxgen.Classifier(2), "rolled_back"},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo := rolloutRepo(t, c.candidate)
			if err := os.WriteFile(filepath.Join(repo, "classifier", "config.yaml"), []byte(rolloutConfig+"drift: {window: 1m}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			rows := make([][]float32, 1300) // rowFeatures' whole period
			for i := range rows {
				rows[i] = rowFeatures(i)
			}
			data := filepath.Join(t.TempDir(), "ref.jsonl")
			writeRows(t, data, rows)
			stop, err := startORT("")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = writeProfile(context.Background(), offlineLoader(), profileOptions{root: repo, model: "classifier", version: "1", data: data,
				output: filepath.Join(repo, "classifier", "2", drift.ProfileFile), bins: drift.DefaultBins})
			if serr := stop(); err != nil || serr != nil {
				t.Fatal(err, serr)
			}
			ts := startServer(t, repo, "--rollout-tick", "20ms")
			l := startLoad(t, ts, 4)
			startRollout(t, ts, `{"candidate":"2","min_requests":400,"gates":{"max_drift":0.2}}`)
			d := waitPhase(t, ts, "rolled_back", "promoted", "held")
			l.finish(t, ts)
			to, reason, _ := lastDecision(t, d)
			if to != c.want {
				t.Fatalf("ended %s by %q (%s), want %s", to, reason, d.Reason, c.want)
			}
			judged := 0
			for _, h := range d.History {
				for _, g := range h.Gates {
					if g.Name == "max_drift" && g.Judged {
						judged++
						t.Logf("step %d: max_drift %.4f, pass %v", h.Step, g.Value, g.Pass)
						if g.Pass != (g.Value <= 0.2) {
							t.Errorf("max_drift %g judged pass=%v against 0.2", g.Value, g.Pass)
						}
					}
				}
			}
			if judged == 0 {
				t.Errorf("no decision judged max_drift: %+v", d.History)
			}
			if c.want == "rolled_back" && reason != "max_drift" {
				t.Errorf("rolled back by %q, want max_drift", reason)
			}
		})
	}
}
