package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onnxserve/onnxserve/internal/payloadlog"
	inference "github.com/onnxserve/onnxserve/proto"
)

// ceReceiver is a CloudEvents HTTP receiver built with the SDK, recording
// every event it is sent.
type ceReceiver struct {
	url    string
	mu     sync.Mutex
	events []event.Event
	got    chan struct{}
}

func newCEReceiver(t *testing.T) *ceReceiver {
	t.Helper()
	r := &ceReceiver{got: make(chan struct{}, 1024)}
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, func(_ context.Context, ev event.Event) protocol.Result {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *ceReceiver) snapshot() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

func (r *ceReceiver) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(testTimeout)
	for len(r.snapshot()) < n {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("receiver got %d events, want %d", len(r.snapshot()), n)
		}
	}
}

// TestPayloadLogEndToEnd: the real server with real ONNX Runtime and
// payload_log sample 1 on simple sends exactly one request and one
// response CloudEvent per inference over both protocols, with KServe's
// attributes and v2 JSON bodies carrying the id and version, INPUT1
// redacted; the file sink holds the same, and export joins it into one row
// per inference with the values sent and answered.
func TestPayloadLogEndToEnd(t *testing.T) {
	repo := copyRepo(t)
	cfgPath := filepath.Join(repo, "simple", "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, "\npayload_log:\n  sample: 1.0\n  mode: all\n  redact: [INPUT1]\n"...)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	rcv := newCEReceiver(t)
	dir := filepath.Join(t.TempDir(), "payload")
	ts := startServer(t, repo, "--payload-log-url", rcv.url, "--payload-log-dir", dir, "--payload-log-namespace", "team-a")

	const n = 8
	input0 := func(i int) []int { return seq(10*i, 16) }
	ones := make([]int, 16)
	for j := range ones {
		ones[j] = 1
	}
	for i := range n {
		body := strings.Replace(simpleBody(input0(i), ones), `"id":"r1"`, fmt.Sprintf(`"id":"http-%d"`, i), 1)
		var resp inferResponse
		if code := do(t, "POST", ts.http+"/v2/models/simple/infer", body, &resp); code != 200 {
			t.Fatalf("HTTP infer: %d %s", code, resp.Error)
		}
	}
	conn, err := grpc.NewClient(ts.a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inference.NewGRPCInferenceServiceClient(conn)
	for i := range n {
		tensor := func(name string, v []int) *inference.ModelInferRequest_InferInputTensor {
			c := &inference.InferTensorContents{}
			for _, x := range v {
				c.IntContents = append(c.IntContents, int32(x))
			}
			return &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: "INT32", Shape: []int64{1, 16}, Contents: c}
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		_, err := client.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "simple", Id: fmt.Sprintf("grpc-%d", i),
			Inputs: []*inference.ModelInferRequest_InferInputTensor{tensor("INPUT0", input0(n+i)), tensor("INPUT1", ones)}})
		cancel()
		if err != nil {
			t.Fatalf("gRPC infer: %v", err)
		}
	}
	rcv.wait(t, 4*n)
	// Shutdown flushes the sinks: nothing more may arrive, nothing less.
	ts.shutdown(t)
	evs := rcv.snapshot()
	if len(evs) != 4*n {
		t.Fatalf("%d events for %d inferences, want exactly %d", len(evs), 2*n, 4*n)
	}
	index := map[string]int{}
	for i := range n {
		index[fmt.Sprintf("http-%d", i)], index[fmt.Sprintf("grpc-%d", i)] = i, n+i
	}
	count := map[string]int{}
	for _, ev := range evs {
		count[ev.Type()+" "+ev.ID()]++
		ext := ev.Extensions()
		for k, want := range map[string]string{"inferenceservicename": "simple", "namespace": "team-a", "component": "predictor", "endpoint": "default"} {
			if got, _ := ext[k].(string); got != want {
				t.Errorf("event %s: ce-%s = %v, want %q", ev.ID(), k, ext[k], want)
			}
		}
		if ev.Source() == "" || ev.Time().IsZero() || ev.DataContentType() != "application/json" {
			t.Errorf("event %s: source %q time %v content type %q", ev.ID(), ev.Source(), ev.Time(), ev.DataContentType())
		}
		var b struct {
			ID           string `json:"id"`
			ModelName    string `json:"model_name"`
			ModelVersion string `json:"model_version"`
			Inputs       []struct {
				Name string `json:"name"`
				Data []int  `json:"data"`
			} `json:"inputs"`
			Outputs []struct {
				Name string `json:"name"`
				Data []int  `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(ev.Data(), &b); err != nil {
			t.Fatalf("event %s: body %q is not JSON: %v", ev.ID(), ev.Data(), err)
		}
		if b.ID != ev.ID() {
			t.Errorf("event %s: body id %q", ev.ID(), b.ID)
		}
		i, ok := index[ev.ID()]
		if !ok {
			t.Fatalf("event id %q was never sent", ev.ID())
		}
		switch ev.Type() {
		case payloadlog.TypeRequest:
			if len(b.Inputs) != 1 || b.Inputs[0].Name != "INPUT0" || fmt.Sprint(b.Inputs[0].Data) != fmt.Sprint(input0(i)) {
				t.Errorf("request %s: inputs %+v, want INPUT0 %v alone (INPUT1 redacted)", ev.ID(), b.Inputs, input0(i))
			}
		case payloadlog.TypeResponse:
			want := input0(i)
			for j := range want {
				want[j]++
			}
			if b.ModelName != "simple" || b.ModelVersion != "1" || len(b.Outputs) != 2 || fmt.Sprint(b.Outputs[0].Data) != fmt.Sprint(want) {
				t.Errorf("response %s: %+v, want simple v1 with OUTPUT0 %v", ev.ID(), b, want)
			}
		default:
			t.Errorf("event type %q", ev.Type())
		}
	}
	for i := range n {
		for _, id := range []string{fmt.Sprintf("http-%d", i), fmt.Sprintf("grpc-%d", i)} {
			if count[payloadlog.TypeRequest+" "+id] != 1 || count[payloadlog.TypeResponse+" "+id] != 1 {
				t.Errorf("%s: %d request and %d response events, want 1 and 1", id, count[payloadlog.TypeRequest+" "+id], count[payloadlog.TypeResponse+" "+id])
			}
		}
	}

	// The file sink holds the same inferences; export joins them.
	out := filepath.Join(t.TempDir(), "train.jsonl")
	var stdout, stderr bytes.Buffer
	if status := dispatch(commands, []string{"export", "--payload-log-dir", dir, "--model", "simple", "--output", out}, &stdout, &stderr); status != 0 {
		t.Fatalf("export: status %d: %s", status, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*n {
		t.Fatalf("%d exported rows, want %d:\n%s", len(lines), 2*n, b)
	}
	for _, l := range lines {
		var row map[string]any
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatal(err)
		}
		if row["model_version"] != "1" || row["INPUT1_0"] != nil || row["OUTPUT0_3"].(float64) != row["INPUT0_3"].(float64)+1 {
			t.Errorf("row %s: want version 1, no INPUT1, OUTPUT0 = INPUT0 + 1", l)
		}
	}
}

// TestPayloadLogBadFlags: a URL that does not parse, a CA file that is no
// certificate, an unwritable directory each stop startup naming the flag.
func TestPayloadLogBadFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := payloadLogOptions{maxBytes: 1 << 20, maxAge: time.Hour, queue: 8}
	for _, tt := range []struct {
		name string
		set  func(*payloadLogOptions)
		want string
	}{
		{"url does not parse", func(p *payloadLogOptions) { p.url = "http://[::1" }, "--payload-log-url"},
		{"url not http", func(p *payloadLogOptions) { p.url = "ftp://host/x" }, "--payload-log-url"},
		{"url without host", func(p *payloadLogOptions) { p.url = "http:///x" }, "--payload-log-url"},
		{"bad CA file", func(p *payloadLogOptions) { p.url, p.caFile = "https://localhost/", file }, "--payload-log-url: CA file"},
		{"unwritable dir", func(p *payloadLogOptions) { p.dir = filepath.Join(file, "sub") }, "--payload-log-dir"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			tt.set(&p)
			pl, err := newPayloadLog(p, 8000, zap.NewNop(), prometheus.NewRegistry())
			if err == nil {
				_ = pl.Close(context.Background())
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q does not start with %q", err, tt.want)
			}
		})
	}
	for _, args := range [][]string{
		{"--payload-log-max-bytes", "0"}, {"--payload-log-max-age", "0s"}, {"--payload-log-retention", "-1h"},
		{"--payload-log-queue", "0"}, {"--payload-log-ca-file", file},
	} {
		if _, err := parseOptions(args); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("parseOptions(%v) = %v, want an error naming %s", args, err, args[0])
		}
	}
}

// TestExportCommandUsage: the export command's usage errors name the flag;
// a failed export leaves no output file.
func TestExportCommandUsage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "train.parquet")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", "m", "--output", out}, "--payload-log-dir is required"},
		{[]string{"--payload-log-dir", dir, "--output", out}, "--model is required"},
		{[]string{"--payload-log-dir", dir, "--model", "m"}, "--output is required"},
		{[]string{"--payload-log-dir", dir, "--model", "m", "--output", out, "--format", "xml"}, "--format"},
		{[]string{"--payload-log-dir", dir, "--model", "m", "--output", out, "--since", "yesterday"}, "--since"},
	} {
		var stdout, stderr bytes.Buffer
		if status := exportMain(tt.args, &stdout, &stderr); status != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("export %v: status %d, %q; want 2 and %q", tt.args, status, stderr.String(), tt.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if status := exportMain([]string{"--payload-log-dir", dir, "--model", "m", "--output", out}, &stdout, &stderr); status != 1 || !strings.Contains(stderr.String(), "no logged inference") {
		t.Errorf("export of an empty log: status %d, %q", status, stderr.String())
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("a failed export left %v", ents)
	}
}

// TestPayloadLogFeedback: ground truth posted to the feedback API for a
// logged request reaches every sink as a feedback event under the
// request's id, and export puts it in exactly those requests' rows.
func TestPayloadLogFeedback(t *testing.T) {
	repo := copyRepo(t)
	cfgPath := filepath.Join(repo, "classifier", "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(cfg, "\npayload_log: {sample: 1}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	rcv := newCEReceiver(t)
	dir := filepath.Join(t.TempDir(), "payload")
	ts := startServer(t, repo, "--payload-log-url", rcv.url, "--payload-log-dir", dir)

	const n = 6
	for i := range n {
		body := strings.Replace(classifierBody(i), `{"inputs"`, fmt.Sprintf(`{"id":"c-%d","inputs"`, i), 1)
		var resp inferResponse
		if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", body, &resp); code != 200 {
			t.Fatalf("infer: %d %s", code, resp.Error)
		}
	}
	truth := map[string]string{"c-0": "airplane", "c-2": "bird", "c-4": "automobile"}
	var items []map[string]any
	for id, label := range truth {
		items = append(items, map[string]any{"id": id, "ground_truth": label})
	}
	items = append(items, map[string]any{"id": "never-sent", "ground_truth": "bird"})
	fb, err := json.Marshal(map[string]any{"feedback": items})
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Results []struct{ ID, Result string } `json:"results"`
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/feedback", string(fb), &res); code != 200 {
		t.Fatalf("feedback: %d %+v", code, res)
	}
	rcv.wait(t, 2*n+len(items))
	ts.shutdown(t)
	got := map[string]string{}
	for _, ev := range rcv.snapshot() {
		if ev.Type() != payloadlog.TypeFeedback {
			continue
		}
		var b struct {
			ID          string   `json:"id"`
			ModelName   string   `json:"model_name"`
			GroundTruth []string `json:"ground_truth"`
		}
		if err := json.Unmarshal(ev.Data(), &b); err != nil || b.ID != ev.ID() || b.ModelName != "classifier" || len(b.GroundTruth) != 1 {
			t.Errorf("feedback event %s: body %s (%v)", ev.ID(), ev.Data(), err)
			continue
		}
		if ext, _ := ev.Extensions()["inferenceservicename"].(string); ext != "classifier" {
			t.Errorf("feedback event %s: ce-inferenceservicename %q", ev.ID(), ext)
		}
		got[ev.ID()] = b.GroundTruth[0]
	}
	if len(got) != len(items) || got["never-sent"] != "bird" {
		t.Errorf("feedback events %v, want one per posted item %v", got, items)
	}

	out := filepath.Join(t.TempDir(), "train.csv")
	var stdout, stderr bytes.Buffer
	if status := dispatch(commands, []string{"export", "--payload-log-dir", dir, "--model", "classifier", "--output", out}, &stdout, &stderr); status != 0 {
		t.Fatalf("export: status %d: %s", status, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	head := strings.Split(lines[0], ",")
	if len(lines) != n+1 || head[len(head)-1] != payloadlog.TruthColumn || head[2] != "id" {
		t.Fatalf("export: %d lines, header %v; want %d rows ending in %s", len(lines), head, n, payloadlog.TruthColumn)
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if want := truth[f[2]]; f[len(f)-1] != want {
			t.Errorf("row %s: ground truth %q, want %q", f[2], f[len(f)-1], want)
		}
	}
}
