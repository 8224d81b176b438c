package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// TestExplicitModelControl starts with one model named on the command line
// and loads, reloads with an override, and unloads the others through the
// API, as Triton's explicit mode does.
func TestExplicitModelControl(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--model-control-mode", "explicit", "--load-model", "simple")
	var idx []map[string]string
	do(t, "POST", ts.http+"/v2/repository/index", "", &idx)
	if len(idx) != 1 || idx[0]["name"] != "simple" || idx[0]["state"] != "READY" {
		t.Fatalf("index after startup: %v", idx)
	}
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", classifierBody(1), &r); code != 404 {
		t.Fatalf("classifier before load: %d %s", code, r.Error)
	}

	var e struct {
		Error string `json:"error"`
	}
	if code := do(t, "POST", ts.http+"/v2/repository/models/classifier/load", "", &e); code != 200 {
		t.Fatalf("load: %d %s", code, e.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/versions/2/infer", classifierBody(1), &r); code != 200 || r.ModelVersion != "2" {
		t.Fatalf("classifier v2 after load: %d %+v", code, r)
	}
	// An override that keeps only version 1 reloads the model with it.
	override := `{"parameters":{"config":"max_batch_size: 4\nversion_policy:\n  specific: [1]\n"}}`
	if code := do(t, "POST", ts.http+"/v2/repository/models/classifier/load", override, &e); code != 200 {
		t.Fatalf("load with override: %d %s", code, e.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", classifierBody(1), &r); code != 200 || r.ModelVersion != "1" {
		t.Fatalf("after override: %d %+v", code, r)
	}
	for _, bad := range []string{
		`{"parameters":{"config":"max_batch_size: -3\n"}}`,
		`{"parameters":{"config":"no_such_field: 1\n"}}`,
	} {
		e.Error = ""
		if code := do(t, "POST", ts.http+"/v2/repository/models/classifier/load", bad, &e); code != 400 || e.Error == "" {
			t.Errorf("override %s: %d %q, want 400 naming the field", bad, code, e.Error)
		}
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", classifierBody(1), &r); code != 200 {
		t.Fatalf("a rejected override took the model down: %d %s", code, r.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/repository/models/nope/load", "", &e); code != 404 {
		t.Errorf("load unknown model: %d %s", code, e.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/repository/models/classifier/unload", "", &e); code != 200 {
		t.Fatalf("unload: %d %s", code, e.Error)
	}
	if code := do(t, "POST", ts.http+"/v2/models/classifier/infer", classifierBody(1), &r); code != 503 {
		t.Errorf("after unload: %d, want 503", code)
	}
	idx = nil
	do(t, "POST", ts.http+"/v2/repository/index", "", &idx)
	found := false
	for _, row := range idx {
		if row["name"] == "classifier" {
			found = true
			if row["state"] != "UNAVAILABLE" || row["reason"] != "unloaded" {
				t.Errorf("unloaded version listed as %v", row)
			}
		}
	}
	if !found {
		t.Errorf("unloaded model missing from the index: %v", idx)
	}
}

// TestLogLevelAtRunTime changes the level through the metrics port.
func TestLogLevelAtRunTime(t *testing.T) {
	ts := startServer(t, copyRepo(t))
	url := "http://" + ts.a.metricsLn.Addr().String() + "/log-level"
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"level":"debug"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT /log-level: %d %s", resp.StatusCode, body)
	}
	if !ts.a.level.Enabled(zapcore.DebugLevel) {
		t.Error("the level did not change")
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Level string `json:"level"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.Level != "debug" {
		t.Errorf("GET /log-level = %q", got.Level)
	}
}

// TestManagementClosedByDefault: without --admin-token-file and without
// --admin-allow-loopback, management calls are refused even from loopback
// (where sidecars connect from), on the HTTP port and for PUT /log-level on
// the metrics port, with a message naming the flags; reads of the log
// level and inference stay open.
func TestManagementClosedByDefault(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--admin-allow-loopback=false")
	var e struct {
		Error string `json:"error"`
	}
	for _, path := range []string{"/v2/repository/index", "/v2/repository/models/simple/unload"} {
		if code := do(t, "POST", ts.http+path, "", &e); code != http.StatusForbidden || !strings.Contains(e.Error, "--admin-token-file") || !strings.Contains(e.Error, "--admin-allow-loopback") {
			t.Errorf("POST %s: %d %q, want 403 naming --admin-token-file and --admin-allow-loopback", path, code, e.Error)
		}
	}
	url := "http://" + ts.a.metricsLn.Addr().String() + "/log-level"
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"level":"debug"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--admin-token-file") {
		t.Errorf("PUT /log-level: %d %s, want 403 naming --admin-token-file", resp.StatusCode, body)
	}
	if ts.a.level.Enabled(zapcore.DebugLevel) {
		t.Error("the refused PUT changed the level")
	}
	if resp, err := http.Get(url); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /log-level: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if code := do(t, "GET", ts.http+"/v2/models/simple", "", nil); code != http.StatusOK {
		t.Errorf("metadata: %d", code)
	}
}
