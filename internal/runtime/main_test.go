package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// requireEnv makes tests that need ONNX Runtime fail, not skip, when the
// library is missing; `make test` sets it.
const requireEnv = "ONNXSERVE_REQUIRE_ORT"

// initProbeEnv turns the test binary into a one-shot probe that calls Init on
// the named file and prints the error, so tests can try bad libraries
// without touching this process's one ONNX Runtime environment.
const initProbeEnv = "ONNXSERVE_RUNTIME_INIT_PROBE"

// probeOK is what the probe prints when Init succeeds.
const probeOK = "init ok"

// The library every test in this process shares, and why it is missing.
var (
	ortLib string
	ortErr error
)

func TestMain(m *testing.M) {
	if p, ok := os.LookupEnv(initProbeEnv); ok {
		if _, err := Init(p); err != nil {
			fmt.Print(err)
		} else {
			fmt.Print(probeOK)
		}
		os.Exit(0)
	}
	ortLib, ortErr = ResolveLibrary("")
	if ortErr == nil {
		_, ortErr = Init(ortLib)
	}
	code := m.Run()
	if ortErr == nil {
		if n := LiveSessions(); n != 0 && code == 0 {
			fmt.Fprintf(os.Stderr, "%d sessions were never closed\n", n)
			code = 1
		}
		if err := Shutdown(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// requireORT skips t when the library could not be loaded, or fails it when
// ONNXSERVE_REQUIRE_ORT=1.
func requireORT(t *testing.T) {
	t.Helper()
	if ortErr == nil {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("ONNX Runtime is required (%s=1): %v", requireEnv, ortErr)
	}
	t.Skipf("ONNX Runtime not available: %v", ortErr)
}

// writeModel stores model bytes in a temporary file and returns its path.
func writeModel(t *testing.T, model []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// load loads model bytes with opts and closes the session when t ends.
func load(t *testing.T, model []byte, opts Options) *Session {
	t.Helper()
	requireORT(t)
	s, err := Load(writeModel(t, model), opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
