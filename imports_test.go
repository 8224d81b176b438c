package onnxserve

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/onnxserve/onnxserve"

// allowed lists, for each package, the module's internal packages it may
// import directly. A package missing from the table may import none.
var allowed = map[string][]string{
	"cmd/serve":                           {"*"},
	"cmd/genmodels":                       {"internal/onnxgen"},
	"cmd/ortbench":                        {"internal/runtime", "internal/tensor", "internal/onnxgen"},
	"internal/transport":                  {"internal/serving", "internal/tensor"},
	"internal/transport/guard":            {"internal/transport", "internal/serving", "internal/tensor"},
	"internal/transport/httpapi":          {"internal/transport", "internal/transport/guard", "internal/transport/httpapi/jsonscan", "internal/serving", "internal/tensor"},
	"internal/transport/httpapi/jsonscan": {},
	"internal/transport/grpcapi":          {"internal/transport", "internal/transport/guard", "internal/serving", "internal/tensor", "proto"},
	"internal/serving":                    {"internal/batcher", "internal/router", "internal/repository", "internal/tensor"},
	"internal/router":                     {},
	"internal/repository":                 {},
	"internal/batcher":                    {"internal/tensor"},
	"internal/runtime":                    {"internal/tensor"},
	"internal/tensor":                     {},
	"internal/onnxgen":                    {},
	"internal/testcert":                   {},
	"internal/serving/servingtest":        {"internal/tensor"},
	"proto":                               {},
	"bench":                               {"proto"},
	"deploy":                              {},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// TestImportRules enforces DESIGN.md §3: each package imports only the
// internal packages its row allows, and the test-support packages
// (internal/testcert, whose keys are made on the spot and never protected,
// and internal/serving/servingtest's fake models) are imported by tests
// alone.
func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		if name == "." {
			continue
		}
		for _, testOnly := range []string{"internal/testcert", "internal/serving/servingtest"} {
			if slices.Contains(p.Imports, module+"/"+testOnly) {
				t.Errorf("%s imports %s outside its tests; only tests may", name, testOnly)
			}
		}
		rule, ok := allowed[name]
		if strings.HasPrefix(name, "bench/") {
			rule, ok = allowed["bench"], true
		}
		if !ok {
			t.Errorf("package %s has no row in the import rules; add one deliberately", name)
			continue
		}
		if slices.Contains(rule, "*") {
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if !slices.Contains(rule, rel(imp)) {
				t.Errorf("%s imports %s; DESIGN.md §3 allows only %v", name, rel(imp), rule)
			}
		}
	}
}

// TestOnlyRuntimeKnowsONNXRuntime keeps the cgo binding behind one package:
// nothing but internal/runtime (and the commands that use it: the server
// that wires it and the raw baseline of the benchmarks) may depend on it,
// even indirectly, and nothing but the front ends imports transport.
func TestOnlyRuntimeKnowsONNXRuntime(t *testing.T) {
	const ort = "github.com/yalue/onnxruntime_go"
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		switch name {
		case "internal/runtime", "cmd/serve", "cmd/ortbench", ".":
			continue
		}
		if slices.Contains(p.Deps, ort) {
			t.Errorf("%s depends on %s; only internal/runtime may", name, ort)
		}
		if slices.Contains(p.Deps, module+"/internal/runtime") {
			t.Errorf("%s depends on internal/runtime; only the commands may join it to the rest", name)
		}
		if !strings.HasPrefix(name, "internal/transport") && name != "cmd/serve" && slices.Contains(p.Imports, module+"/internal/transport") {
			t.Errorf("%s imports internal/transport; only the front ends may", name)
		}
	}
}
