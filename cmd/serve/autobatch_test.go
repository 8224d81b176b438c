package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoConfigFileBatches serves the bundled simple model without its
// config.yaml: its first dimensions are all dynamic, so it is batched with
// a cap the server measured on the real ONNX Runtime, which the index and
// the statistics report, and it takes requests of several rows.
func TestNoConfigFileBatches(t *testing.T) {
	repo := copyRepo(t)
	if err := os.Remove(filepath.Join(repo, "simple", "config.yaml")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo)

	var idx []map[string]string
	do(t, "POST", ts.http+"/v2/repository/index", `{"ready": true}`, &idx)
	var row map[string]string
	for _, r := range idx {
		if r["name"] == "simple" {
			row = r
		}
	}
	if row == nil || !strings.Contains(row["batching"], "chosen by measurement") {
		t.Fatalf("simple's index row %v, want the batch size measurement", row)
	}
	var st struct {
		ModelStats []struct {
			BatchSizes *struct {
				Chosen  int `json:"chosen"`
				Timings []struct {
					BatchSize int `json:"batch_size"`
				} `json:"timings"`
			} `json:"batch_sizes"`
		} `json:"model_stats"`
	}
	if code := do(t, "GET", ts.http+"/v2/models/simple/stats", "", &st); code != 200 || len(st.ModelStats) != 1 || st.ModelStats[0].BatchSizes == nil {
		t.Fatalf("statistics: %d %+v", code, st)
	}
	bs := st.ModelStats[0].BatchSizes
	if n := len(bs.Timings); n != 7 || bs.Timings[n-1].BatchSize != 64 || bs.Chosen < 1 || bs.Chosen > 64 {
		t.Errorf("measurement %+v, want sizes 1..64 and one chosen among them", bs)
	}

	// Two rows in one request: the model has a batch dimension.
	a, b := seq(0, 32), seq(100, 32)
	body := fmt.Sprintf(`{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[2,16],"data":%s},{"name":"INPUT1","datatype":"INT32","shape":[2,16],"data":%s}]}`, ints(a), ints(b))
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", body, &r); code != 200 {
		t.Fatalf("2-row infer: %d %s", code, r.Error)
	}
	var sum []int
	_ = json.Unmarshal(r.Outputs[0].Data, &sum)
	for i := range a {
		if len(sum) != len(a) || sum[i] != a[i]+b[i] {
			t.Fatalf("sum %v", sum)
		}
	}
}

func ints(v []int) string {
	b, _ := json.Marshal(v)
	return string(b)
}
