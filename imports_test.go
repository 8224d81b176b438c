package onnxserve

import (
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/onnxserve/onnxserve"

// modules are the folders of this repository's Go modules, the server's at
// the root; the Makefile's MODULES names the same, so `make vet` and `make
// test` reach every package.
var modules = []string{".", "bench", "deploy"}

// serverMustNotRequire lists the module paths (or prefixes ending in "/")
// that only bench/ and deploy/ use: plotting, profile parsing, Kubernetes
// API types and BuildKit's Dockerfile parser, with what they alone pull in.
// The server's go.mod must not name them, so its dependency set is what it
// builds and tests with.
var serverMustNotRequire = []string{
	"k8s.io/",
	"sigs.k8s.io/",
	"github.com/moby/",
	"github.com/containerd/",
	"github.com/opencontainers/",
	"github.com/google/pprof",
	"gonum.org/",
	"codeberg.org/",
	"git.sr.ht/",
	"github.com/ajstarks/",
	"github.com/golang/freetype",
	"golang.org/x/image",
}

// allowed lists, for each package, the module's internal packages it may
// import directly. A package missing from the table may import none.
var allowed = map[string][]string{
	"cmd/serve":                           {"*"},
	"cmd/genmodels":                       {"internal/onnxgen"},
	"cmd/ortbench":                        {"internal/runtime", "internal/tensor", "internal/onnxgen"},
	"internal/transport":                  {"internal/serving", "internal/tensor"},
	"internal/transport/guard":            {"internal/transport", "internal/serving", "internal/tensor"},
	"internal/transport/httpapi":          {"internal/transport", "internal/transport/guard", "internal/transport/httpapi/jsonscan", "internal/serving", "internal/tensor", "internal/quality", "internal/drift"},
	"internal/transport/httpapi/jsonscan": {},
	"internal/transport/grpcapi":          {"internal/transport", "internal/transport/guard", "internal/serving", "internal/tensor", "proto", "internal/quality"},
	"internal/serving":                    {"internal/batcher", "internal/router", "internal/repository", "internal/tensor"},
	"internal/router":                     {},
	"internal/repository":                 {},
	"internal/batcher":                    {"internal/tensor"},
	"internal/runtime":                    {"internal/tensor"},
	"internal/tensor":                     {},
	"internal/onnxgen":                    {},
	"internal/testcert":                   {},
	// The offline commands (check, score) and the data files they share.
	"internal/dataset": {"internal/tensor", "internal/transport/httpapi/jsonscan"},
	"internal/check":   {"internal/serving", "internal/repository", "internal/dataset", "internal/tensor"},
	"internal/score":   {"internal/serving", "internal/repository", "internal/dataset", "internal/tensor"},
	// The model-quality loop: taps on the serving core (DESIGN §3), and
	// rollout reading their signals through its own small interfaces.
	"internal/quality":             {"internal/serving", "internal/tensor"},
	"internal/drift":               {"internal/serving", "internal/repository", "internal/tensor"},
	"internal/payloadlog":          {"internal/serving", "internal/tensor"},
	"internal/rollout":             {"internal/serving", "internal/router"},
	"internal/serving/servingtest": {"internal/tensor"},
	"proto":                        {},
	"bench":                        {"proto"},
	"deploy":                       {},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages lists the packages of every module in modules.
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	var pkgs []pkgInfo
	for _, dir := range modules {
		cmd := exec.Command("go", "list", "-json", "./...")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in %s: %v", dir, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for {
			var p pkgInfo
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("decode go list output of %s: %v", dir, err)
			}
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// goMod is the part of `go mod edit -json` these tests read.
type goMod struct {
	Go      string
	Require []struct {
		Path     string
		Indirect bool
	}
	Replace []struct {
		Old struct{ Path string }
		New struct{ Path, Version string }
	}
}

func readGoMod(t *testing.T, dir string) goMod {
	t.Helper()
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json in %s: %v", dir, err)
	}
	var m goMod
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("decode go.mod of %s: %v", dir, err)
	}
	return m
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

// loopPackages are the model-quality loop's packages: taps registered by
// cmd/serve, and rollout.
var loopPackages = []string{"internal/quality", "internal/drift", "internal/payloadlog", "internal/rollout"}

// TestLoopPackagesStayApart enforces DESIGN §3's rule for the loop: only
// cmd/serve and the front ends import its packages, and they never import
// one another, so each hangs off the serving core's tap (or its own small
// interfaces) alone.
func TestLoopPackagesStayApart(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		for _, loop := range loopPackages {
			if !slices.Contains(p.Imports, module+"/"+loop) {
				continue
			}
			if name != "cmd/serve" && !strings.HasPrefix(name, "internal/transport") {
				t.Errorf("%s imports %s; only cmd/serve and the front ends may", name, loop)
			}
		}
	}
}

// TestModules checks that modules names every go.mod of the repository,
// that the Makefile's MODULES names the same folders (so `make vet` and
// `make test` cover each), that all share one go directive, and that bench
// builds against the proto package of this checkout, never a published one.
func TestModules(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			found = append(found, filepath.ToSlash(filepath.Dir(path)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	want := slices.Sorted(slices.Values(modules))
	if !slices.Equal(found, want) {
		t.Errorf("go.mod files in %v; the modules list has %v", found, want)
	}

	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^MODULES := (.*)$`).FindSubmatch(makefile)
	if line == nil {
		t.Fatal("Makefile has no MODULES := line")
	}
	if got := strings.Fields(string(line[1])); !slices.Equal(got, modules) {
		t.Errorf("Makefile MODULES %v, want %v", got, modules)
	}

	root := readGoMod(t, ".")
	for _, dir := range modules[1:] {
		if m := readGoMod(t, dir); m.Go != root.Go {
			t.Errorf("%s/go.mod says go %s, the server's go %s", dir, m.Go, root.Go)
		}
	}
	bench := readGoMod(t, "bench")
	replaced := false
	for _, r := range bench.Replace {
		if r.Old.Path == module && r.New.Path == "../" && r.New.Version == "" {
			replaced = true
		}
	}
	if !replaced {
		t.Errorf("bench/go.mod does not replace %s with ../", module)
	}
}

// TestServerRequiresOnlyItsOwn keeps the dependencies of bench/ and deploy/
// out of the server's go.mod.
func TestServerRequiresOnlyItsOwn(t *testing.T) {
	for _, r := range readGoMod(t, ".").Require {
		for _, bad := range serverMustNotRequire {
			if r.Path == bad || strings.HasSuffix(bad, "/") && strings.HasPrefix(r.Path, bad) {
				t.Errorf("go.mod requires %s, which only bench/ or deploy/ use; require it in their go.mod", r.Path)
			}
		}
	}
}
