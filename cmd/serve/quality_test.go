package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onnxserve/onnxserve/internal/onnxgen"
	inference "github.com/onnxserve/onnxserve/proto"
)

// labelledRow is one line of models/classifier/labelled.jsonl.
type labelledRow struct {
	Features []float32 `json:"features"`
	Label    string    `json:"label"`
}

func readLabelled(t *testing.T, repo string) ([]labelledRow, []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(repo, "classifier", "labelled.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []labelledRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r labelledRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	labels, err := os.ReadFile(filepath.Join(repo, "classifier", "labels.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return rows, strings.Fields(string(labels))
}

// qualityRepo is the bundled repository plus two identity models that
// echo what they are sent: "scorer" (binary, [batch, 2] scores) and
// "estimator" (regression, [batch, 1]), so the test chooses their answers,
// and "laggard", whose predictions wait 1ms for their ground truth.
func qualityRepo(t *testing.T) string {
	t.Helper()
	repo := copyRepo(t)
	for _, m := range []struct{ name, task, extra string }{{"scorer", "binary", ""}, {"estimator", "regression", ""},
		{"laggard", "regression", "  feedback_ttl: 1ms\n"}} {
		width := int64(2)
		if m.task == "regression" {
			width = 1
		}
		dir := filepath.Join(repo, m.name, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), onnxgen.Identity(onnxgen.Float, []int64{onnxgen.Dynamic, width}), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("max_batch_size: 8\nmonitoring:\n  task: %s\n%s", m.task, m.extra)
		if err := os.WriteFile(filepath.Join(repo, m.name, "config.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// qclient talks to one server over both protocols.
type qclient struct {
	t    *testing.T
	base string
	inf  inference.GRPCInferenceServiceClient
	q    inference.ModelQualityClient
}

func newQClient(t *testing.T, ts *testServer) *qclient {
	t.Helper()
	conn, err := grpc.NewClient(ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &qclient{t: t, base: ts.http, inf: inference.NewGRPCInferenceServiceClient(conn), q: inference.NewModelQualityClient(conn)}
}

func (c *qclient) post(path string, body any, code int) []byte {
	c.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.Post(c.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		c.t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, out, code)
	}
	return out
}

// inferHTTP sends rows to model version ver under id and returns the rows
// of the output.
func (c *qclient) inferHTTP(model, ver, id string, rows [][]float32) [][]float32 {
	c.t.Helper()
	var flat []float32
	for _, r := range rows {
		flat = append(flat, r...)
	}
	body := map[string]any{"id": id, "inputs": []map[string]any{{"name": "INPUT", "datatype": "FP32",
		"shape": []int{len(rows), len(rows[0])}, "data": flat}}}
	var resp struct {
		ID      string `json:"id"`
		Outputs []struct {
			Shape []int     `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(c.post("/v2/models/"+model+"/versions/"+ver+"/infer", body, http.StatusOK), &resp); err != nil {
		c.t.Fatal(err)
	}
	if resp.ID != id {
		c.t.Fatalf("id %q, want %q", resp.ID, id)
	}
	return split(resp.Outputs[0].Data, resp.Outputs[0].Shape[1])
}

func (c *qclient) inferGRPC(model, ver, id string, rows [][]float32) [][]float32 {
	c.t.Helper()
	var raw []byte
	for _, r := range rows {
		for _, f := range r {
			raw = append(raw, f32le(f)...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.inf.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: model, ModelVersion: ver, Id: id,
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "FP32", Shape: []int64{int64(len(rows)), int64(len(rows[0]))}}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		c.t.Fatal(err)
	}
	out := resp.RawOutputContents[0]
	vals := make([]float32, len(out)/4)
	for i := range vals {
		vals[i] = math.Float32frombits(uint32(out[4*i]) | uint32(out[4*i+1])<<8 | uint32(out[4*i+2])<<16 | uint32(out[4*i+3])<<24)
	}
	return split(vals, int(resp.Outputs[0].Shape[1]))
}

func f32le(f float32) []byte {
	u := math.Float32bits(f)
	return []byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)}
}

func split(vals []float32, cols int) [][]float32 {
	var out [][]float32
	for i := 0; i+cols <= len(vals); i += cols {
		out = append(out, vals[i:i+cols])
	}
	return out
}

func argmax(r []float32) int {
	best := 0
	for i, v := range r {
		if v > r[best] {
			best = i
		}
	}
	return best
}

// fbItem is one feedback item in HTTP form.
type fbItem struct {
	ID           string `json:"id"`
	GroundTruth  any    `json:"ground_truth"`
	ModelVersion string `json:"model_version,omitempty"`
	Prediction   any    `json:"prediction,omitempty"`
}

func (c *qclient) feedbackHTTP(model string, items []fbItem) []string {
	c.t.Helper()
	var resp struct {
		Results []struct{ Result, Reason string } `json:"results"`
	}
	if err := json.Unmarshal(c.post("/v2/models/"+model+"/feedback", map[string]any{"feedback": items}, http.StatusOK), &resp); err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, r := range resp.Results {
		out = append(out, r.Result)
	}
	return out
}

func (c *qclient) feedbackGRPC(model string, items []*inference.FeedbackItem) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.q.Feedback(ctx, &inference.FeedbackRequest{ModelName: model, Feedback: items})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, r := range resp.Results {
		out = append(out, r.Result)
	}
	return out
}

func label(s string) *inference.Value {
	return &inference.Value{Kind: &inference.Value_Label{Label: s}}
}
func number(f float64) *inference.Value {
	return &inference.Value{Kind: &inference.Value_Number{Number: f}}
}

// confusion holds labelled (actual, predicted) pairs of one version.
type confusion map[[2]int]int

// offline computes accuracy, per-class F1 and macro F1 over the classes
// that occur, independently of the server.
func (m confusion) offline() (n int, acc float64, f1 map[int]float64, macro float64) {
	present := map[int]bool{}
	correct := 0
	for k, c := range m {
		present[k[0]], present[k[1]] = true, true
		n += c
		if k[0] == k[1] {
			correct += c
		}
	}
	f1 = map[int]float64{}
	for cl := range present {
		tp, fp, fn := 0, 0, 0
		for k, c := range m {
			switch {
			case k[0] == cl && k[1] == cl:
				tp += c
			case k[1] == cl:
				fp += c
			case k[0] == cl:
				fn += c
			}
		}
		p, r := 0.0, 0.0
		if tp+fp > 0 {
			p = float64(tp) / float64(tp+fp)
		}
		if tp+fn > 0 {
			r = float64(tp) / float64(tp+fn)
		}
		f1[cl] = 0
		if p+r > 0 {
			f1[cl] = 2 * p * r / (p + r)
		}
		macro += f1[cl] / float64(len(present))
	}
	return n, float64(correct) / float64(n), f1, macro
}

// TestQualityLoop replays the bundled labelled data set through HTTP and
// gRPC against classifier versions 1 and 2, restarts the server halfway
// through the feedback, and checks the server's quality against an
// offline computation: accuracy, per-class and macro F1, ROC-AUC of a
// binary model, MAE and RMSE of a regression model; late feedback
// matches after the restart, and expired, duplicate, unknown and
// stateless items are counted exactly.
func TestQualityLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two servers")
	}
	repo := qualityRepo(t)
	state := t.TempDir()
	rows, names := readLabelled(t, repo)
	ts := startServer(t, repo, "--state-dir", state)
	c := newQClient(t, ts)

	want := map[string]confusion{"1": {}, "2": {}}
	var late []fbItem // posted after the restart
	var lateGRPC []*inference.FeedbackItem
	for i, r := range rows {
		actual := slices.Index(names, r.Label)
		for _, ver := range []string{"1", "2"} {
			id := fmt.Sprintf("row%03d-v%s", i, ver)
			var out [][]float32
			if (i+len(ver))%2 == 0 {
				out = c.inferHTTP("classifier", ver, id, [][]float32{r.Features})
			} else {
				out = c.inferGRPC("classifier", ver, id, [][]float32{r.Features})
			}
			want[ver][[2]int{actual, argmax(out[0])}]++
			switch {
			case i < len(rows)/2 && i%2 == 0: // now, over HTTP, by label name
				if got := c.feedbackHTTP("classifier", []fbItem{{ID: id, GroundTruth: r.Label}}); got[0] != "matched" {
					t.Fatalf("%s: %v", id, got)
				}
			case i < len(rows)/2: // now, over gRPC, by class index
				if got := c.feedbackGRPC("classifier", []*inference.FeedbackItem{{Id: id, GroundTruth: []*inference.Value{number(float64(actual))}}}); got[0] != "matched" {
					t.Fatalf("%s: %v", id, got)
				}
			case i%2 == 0:
				late = append(late, fbItem{ID: id, GroundTruth: []any{actual}})
			default:
				lateGRPC = append(lateGRPC, &inference.FeedbackItem{Id: id, GroundTruth: []*inference.Value{label(r.Label)}})
			}
		}
	}
	// A binary model: scores chosen here; a regression model likewise.
	var scores []float64
	var positives []bool
	var absSum, sqSum float64
	var binItems, regItems []fbItem
	for i := range 60 {
		s := float32(i%20) / 20
		pos := (i*7)%10 < int(s*10)+2
		out := c.inferHTTP("scorer", "1", fmt.Sprint("s", i), [][]float32{{1 - s, s}})
		scores, positives = append(scores, float64(out[0][1])), append(positives, pos)
		truth := 0
		if pos {
			truth = 1
		}
		binItems = append(binItems, fbItem{ID: fmt.Sprint("s", i), GroundTruth: truth})
		v := float32(i) / 7
		out = c.inferGRPC("estimator", "1", fmt.Sprint("e", i), [][]float32{{v}})
		y := float64(i%9) / 3
		d := float64(out[0][0]) - y
		absSum, sqSum = absSum+math.Abs(d), sqSum+d*d
		regItems = append(regItems, fbItem{ID: fmt.Sprint("e", i), GroundTruth: y})
	}

	// Restart: every prediction above is in the store (Close commits).
	ts.shutdown(t)
	ts = startServer(t, repo, "--state-dir", state)
	c = newQClient(t, ts)

	for _, got := range [][]string{c.feedbackHTTP("classifier", late), c.feedbackGRPC("classifier", lateGRPC),
		c.feedbackHTTP("scorer", binItems), c.feedbackHTTP("estimator", regItems)} {
		for i, r := range got {
			if r != "matched" {
				t.Errorf("late item %d: %s", i, r)
			}
		}
	}
	// The stateless path: ids this server never saw, with their version
	// and prediction; scored like the rest.
	stateless := []fbItem{
		{ID: "lb-1", GroundTruth: "cat", ModelVersion: "1", Prediction: "cat"},
		{ID: "lb-2", GroundTruth: 3, ModelVersion: "2", Prediction: []any{"dog"}},
	}
	want["1"][[2]int{3, 3}]++
	want["2"][[2]int{3, 5}]++
	if got := c.feedbackHTTP("classifier", stateless); strings.Join(got, ",") != "matched,matched" {
		t.Errorf("stateless: %v", got)
	}
	// Duplicates (first wins), unknown ids, invalid items.
	got := c.feedbackHTTP("classifier", []fbItem{
		{ID: "row000-v1", GroundTruth: 0}, {ID: "row099-v2", GroundTruth: "cat"}, {ID: "lb-1", GroundTruth: "cat", ModelVersion: "1", Prediction: "cat"},
		{ID: "never", GroundTruth: 1}, {ID: "never-2", GroundTruth: 1},
		{ID: "x", GroundTruth: "unicorn", ModelVersion: "1", Prediction: "cat"},
	})
	if want := "duplicate,duplicate,duplicate,unknown_id,unknown_id,invalid"; strings.Join(got, ",") != want {
		t.Errorf("results %v, want %s", got, want)
	}
	// Expired: a model whose predictions wait 1ms.
	c.inferHTTP("laggard", "1", "slow", [][]float32{{1}})
	<-time.After(5 * time.Millisecond) // not synchronisation: the TTL must pass
	if got := c.feedbackHTTP("laggard", []fbItem{{ID: "slow", GroundTruth: 1}}); got[0] != "expired" {
		t.Errorf("feedback after the TTL: %v", got)
	}

	// The report over HTTP equals the offline computation.
	var rep struct {
		Versions []struct {
			Version  string  `json:"version"`
			Labelled int     `json:"labelled"`
			Accuracy float64 `json:"accuracy"`
			MacroF1  float64 `json:"macro_f1"`
			Classes  []struct {
				Index   int     `json:"index"`
				F1      float64 `json:"f1"`
				Support int     `json:"support"`
			} `json:"classes"`
			ROCAUC *float64 `json:"roc_auc"`
			MAE    *float64 `json:"mae"`
			RMSE   *float64 `json:"rmse"`
		} `json:"versions"`
	}
	getJSON(t, ts.http+"/v2/models/classifier/quality", &rep)
	if len(rep.Versions) != 2 {
		t.Fatalf("report versions: %+v", rep.Versions)
	}
	accuracy := map[string]float64{}
	for _, v := range rep.Versions {
		n, acc, f1, macro := want[v.Version].offline()
		accuracy[v.Version] = acc
		if v.Labelled != n || math.Abs(v.Accuracy-acc) > 1e-9 || math.Abs(v.MacroF1-macro) > 1e-9 {
			t.Errorf("v%s: labelled %d accuracy %v macro F1 %v, want %d %v %v", v.Version, v.Labelled, v.Accuracy, v.MacroF1, n, acc, macro)
		}
		if len(v.Classes) != len(f1) {
			t.Errorf("v%s: %d classes, want %d", v.Version, len(v.Classes), len(f1))
		}
		for _, cl := range v.Classes {
			if math.Abs(cl.F1-f1[cl.Index]) > 1e-9 {
				t.Errorf("v%s class %d: F1 %v, want %v", v.Version, cl.Index, cl.F1, f1[cl.Index])
			}
		}
	}
	if accuracy["2"] <= accuracy["1"] {
		t.Errorf("the data set should favour version 2: accuracy %v", accuracy)
	}
	// gRPC reports the same.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	gq, err := c.q.Quality(ctx, &inference.QualityRequest{ModelName: "classifier", ModelVersion: "2", Window: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gq.Versions) != 1 || math.Abs(gq.Versions[0].GetAccuracy()-accuracy["2"]) > 1e-9 {
		t.Errorf("gRPC report %v, want accuracy %v", gq.Versions, accuracy["2"])
	}

	var pairs, wins float64
	for i := range scores {
		for j := range scores {
			if positives[i] && !positives[j] {
				pairs++
				switch {
				case scores[i] > scores[j]:
					wins++
				case scores[i] == scores[j]:
					wins += 0.5
				}
			}
		}
	}
	getJSON(t, ts.http+"/v2/models/scorer/quality?window=24h", &rep)
	if r := rep.Versions[0].ROCAUC; r == nil || math.Abs(*r-wins/pairs) > 1e-9 {
		t.Errorf("ROC-AUC %v, want %v", r, wins/pairs)
	}
	getJSON(t, ts.http+"/v2/models/estimator/versions/1/quality", &rep)
	if v := rep.Versions[0]; v.MAE == nil || math.Abs(*v.MAE-absSum/60) > 1e-9 || math.Abs(*v.RMSE-math.Sqrt(sqSum/60)) > 1e-9 {
		t.Errorf("MAE %v RMSE %v, want %v %v", v.MAE, v.RMSE, absSum/60, math.Sqrt(sqSum/60))
	}

	// The counters of this (restarted) server count exactly what it saw.
	metrics := scrapeText(t, ts)
	lateMatched := map[string]int{}
	for _, it := range late {
		lateMatched[it.ID[len(it.ID)-1:]]++
	}
	for _, it := range lateGRPC {
		lateMatched[it.Id[len(it.Id)-1:]]++
	}
	for _, w := range []string{
		fmt.Sprintf(`onnxserve_feedback_total{model="classifier",result="matched",version="1"} %d`, lateMatched["1"]+1),
		fmt.Sprintf(`onnxserve_feedback_total{model="classifier",result="matched",version="2"} %d`, lateMatched["2"]+1),
		`onnxserve_feedback_total{model="classifier",result="duplicate",version=""} 2`,
		`onnxserve_feedback_total{model="classifier",result="duplicate",version="1"} 1`,
		`onnxserve_feedback_total{model="classifier",result="unknown_id",version=""} 2`,
		`onnxserve_feedback_total{model="classifier",result="invalid",version="1"} 1`,
		`onnxserve_feedback_total{model="laggard",result="expired",version=""} 1`,
		`onnxserve_labelled_rows_total{model="estimator",version="1"} 60`,
	} {
		if !strings.Contains(metrics, w+"\n") {
			t.Errorf("metrics lack %s", w)
		}
	}
	// Bad input.
	c.post("/v2/models/nope/feedback", map[string]any{"id": "a", "ground_truth": 1}, http.StatusNotFound)
	body := c.post("/v2/models/simple/feedback", map[string]any{"id": "a", "ground_truth": 1}, http.StatusBadRequest)
	if !strings.Contains(string(body), "monitoring block") {
		t.Errorf("unmonitored model: %s", body)
	}
	c.post("/v2/models/classifier/feedback", map[string]any{"id": "a", "ground_truth": 1, "extra": true}, http.StatusBadRequest)
	c.post("/v2/models/classifier/feedback", map[string]any{"id": "a", "ground_truth": map[string]any{}}, http.StatusBadRequest)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func scrapeText(t *testing.T, ts *testServer) string {
	t.Helper()
	resp, err := http.Get("http://" + ts.a.metricsLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
