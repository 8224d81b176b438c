package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/drift"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// referenceRows returns n rows of N(0,1)^64 as float32, feature shifted
// (when ≥ 0) moved by one standard deviation.
func referenceRows(seed uint64, n, shifted int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, 64)
		for f := range out[i] {
			out[i][f] = float32(r.NormFloat64())
			if f == shifted {
				out[i][f]++
			}
		}
	}
	return out
}

// writeRows writes rows as one INPUT column group in the format path names.
func writeRows(t *testing.T, path string, rows [][]float32) {
	t.Helper()
	format, err := dataset.FormatOf(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := dataset.NewWriter(&buf, format, dataset.WriteOptions{
		Outputs: []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}}}, Rows: int64(len(rows))})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		data := make([]byte, 0, 4*len(row))
		for _, x := range row {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(x))
		}
		if err := w.Write("", []tensor.Tensor{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestProfileSameFromEveryFormat: the same reference data as JSON lines,
// CSV, NPY and Parquet gives byte-identical profiles.
func TestProfileSameFromEveryFormat(t *testing.T) {
	requireORT(t)
	stop, err := startORT("")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	repo := copyRepo(t)
	dir := t.TempDir()
	rows := referenceRows(1, 500, -1)
	var first []byte
	for _, ext := range []string{"jsonl", "csv", "npy", "parquet"} {
		data := filepath.Join(dir, "ref."+ext)
		writeRows(t, data, rows)
		out := filepath.Join(dir, ext+".profile.json")
		_, prof, err := writeProfile(context.Background(), offlineLoader(), profileOptions{root: repo, model: "classifier", version: "2", data: data, output: out, bins: drift.DefaultBins})
		if err != nil {
			t.Fatalf("%s: %v", ext, err)
		}
		if prof.Rows != 500 || len(prof.Inputs) != 1 || len(prof.Inputs[0].Features) != 64 || prof.Outputs[0].Class == nil {
			t.Fatalf("%s: profile of %d rows, %d inputs", ext, prof.Rows, len(prof.Inputs))
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Errorf("%s: profile differs from the JSON lines one", ext)
		}
	}
	// --rows takes the first rows only.
	_, prof, err := writeProfile(context.Background(), offlineLoader(), profileOptions{root: repo, model: "classifier", version: "2",
		data: filepath.Join(dir, "ref.csv"), output: filepath.Join(dir, "p.json"), rows: 100, bins: drift.DefaultBins})
	if err != nil || prof.Rows != 100 {
		t.Errorf("--rows 100: %v rows, %v", prof.Rows, err)
	}
	// A malformed record is an error naming its line.
	bad := filepath.Join(dir, "bad.csv")
	text, _ := os.ReadFile(filepath.Join(dir, "ref.csv"))
	lines := strings.SplitAfter(string(text), "\n")
	lines[3] = "1,2,oops\n"
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := writeProfile(context.Background(), offlineLoader(), profileOptions{root: repo, model: "classifier", data: bad, output: filepath.Join(dir, "x.json"), bins: 10}); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("malformed CSV: %v, want an error naming line 4", err)
	}
}

// rowsBody is a v2 JSON request of rows.
func rowsBody(rows [][]float32) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"inputs":[{"name":"INPUT","shape":[%d,64],"datatype":"FP32","data":[`, len(rows))
	for i, row := range rows {
		for j, x := range row {
			if i+j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprint(&sb, x)
		}
	}
	sb.WriteString("]}]}")
	return sb.String()
}

type driftDoc struct {
	ModelDrift []drift.Report `json:"model_drift"`
}

// TestDriftEndToEnd: a classifier version with a profile.json and a drift
// block raises the alert on a stream with feature 7 shifted, in the report
// and the metrics; the unshifted version does not.
func TestDriftEndToEnd(t *testing.T) {
	requireORT(t)
	repo := copyRepo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "ref.npy")
	writeRows(t, data, referenceRows(2, 3000, -1))
	func() {
		stop, err := startORT("")
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		for _, v := range []string{"1", "2"} {
			if _, _, err := writeProfile(context.Background(), offlineLoader(), profileOptions{root: repo, model: "classifier", version: v, data: data, bins: drift.DefaultBins}); err != nil {
				t.Fatal(err)
			}
		}
	}()
	cfgPath := filepath.Join(repo, "classifier", "config.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, append(cfg, "\ndrift: {window: 5m}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo)
	send := func(version string, rows [][]float32) {
		for i := 0; i < len(rows); i += 20 {
			var r inferResponse
			if code := do(t, "POST", ts.http+"/v2/models/classifier/versions/"+version+"/infer", rowsBody(rows[i:i+20]), &r); code != 200 {
				t.Fatalf("infer: %d %s", code, r.Error)
			}
		}
	}
	send("1", referenceRows(3, 1000, 7))
	send("2", referenceRows(4, 1000, -1))
	var doc driftDoc
	deadline := time.Now().Add(testTimeout)
	for {
		doc = driftDoc{}
		if code := do(t, "GET", ts.http+"/v2/models/classifier/drift", "", &doc); code != 200 {
			t.Fatalf("GET drift: %d", code)
		}
		if len(doc.ModelDrift) == 2 && doc.ModelDrift[0].Rows == 1000 && doc.ModelDrift[1].Rows == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drift report never counted every row: %+v", doc)
		}
		time.Sleep(20 * time.Millisecond) // polling the tap's progress, not synchronising
	}
	v2, v1 := doc.ModelDrift[0], doc.ModelDrift[1]
	if v1.Version != "1" || !v1.Alert || v1.Features[0].Tensor != "INPUT" || v1.Features[0].Feature != "7" || v1.Reference != drift.SourceFile {
		b, _ := json.Marshal(v1.Features[:3])
		t.Errorf("shifted version 1: alert %v, top %s", v1.Alert, b)
	}
	if v2.Alert {
		t.Errorf("unshifted version 2 raised the alert: top %+v", v2.Features[0])
	}
	fams := scrape(t, ts)
	for v, want := range map[string]float64{"1": 1, "2": 0} {
		s := series(fams, "onnxserve_drift_alert", map[string]string{"model": "classifier", "version": v})
		if len(s) != 1 || s[0].GetGauge().GetValue() != want {
			t.Errorf("onnxserve_drift_alert{version=%s}: %v, want %g", v, s, want)
		}
	}
	if s := series(fams, "onnxserve_drift", map[string]string{"model": "classifier", "version": "1", "input": "INPUT", "feature": "7", "stat": "psi"}); len(s) != 1 || s[0].GetGauge().GetValue() <= 0.2 {
		t.Errorf("onnxserve_drift feature 7: %v", s)
	}
	if code := do(t, "GET", ts.http+"/v2/models/simple/drift", "", nil); code != 404 {
		t.Errorf("drift of a model without a drift block: %d, want 404", code)
	}
}

// TestBundledProfilesAreCurrent holds models/classifier/{1,2}/profile.json
// to what `onnxserve profile` makes of models/classifier/reference.npy
// (`make profiles` writes them again).
func TestBundledProfilesAreCurrent(t *testing.T) {
	requireORT(t)
	stop, err := startORT("")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	root := filepath.Join("..", "..", "models")
	for _, v := range []string{"1", "2"} {
		out := filepath.Join(t.TempDir(), "profile.json")
		if _, _, err := writeProfile(context.Background(), offlineLoader(), profileOptions{root: root, model: "classifier", version: v,
			data: filepath.Join(root, "classifier", "reference.npy"), output: out, bins: drift.DefaultBins}); err != nil {
			t.Fatal(err)
		}
		made, _ := os.ReadFile(out)
		committed, err := os.ReadFile(filepath.Join(root, "classifier", v, drift.ProfileFile))
		if err != nil || !bytes.Equal(made, committed) {
			t.Errorf("models/classifier/%s/profile.json is stale or missing (%v): run make profiles", v, err)
		}
	}
}
