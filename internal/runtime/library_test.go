package runtime

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveLibrary(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(present, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "nope.so")
	other := filepath.Join(dir, "other.so")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		flag     string
		env      string
		want     string
		wantErr  []string // substrings of the error
		wantNone []string // places that must not be blamed
	}{
		{name: "flag", flag: present, env: other, want: present},
		{name: "env", env: present, want: present},
		{name: "missing flag is not replaced by env", flag: absent, env: present,
			wantErr: []string{absent + " (--onnxruntime-lib)"}, wantNone: []string{present}},
		{name: "missing env", env: absent,
			wantErr: []string{absent + " ($ONNXRUNTIME_LIB)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LibraryEnv, tt.env)
			got, err := ResolveLibrary(tt.flag)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("ResolveLibrary(%q) = %q, %v; want %q", tt.flag, got, err, tt.want)
				}
				return
			}
			checkResolveError(t, err, tt.wantErr, tt.wantNone)
		})
	}
}

// TestResolveLibraryDefault runs from a folder with no go.mod above it and no
// cache, so every default place is missing and must be named.
func TestResolveLibraryDefault(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	dir := t.TempDir()
	t.Chdir(dir)
	want := []string{filepath.Join(dir, cacheRelPath())}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		want = append(want, filepath.Join(filepath.Dir(filepath.Dir(exe)), cacheRelPath()))
	}
	_, err := ResolveLibrary("")
	checkResolveError(t, err, want, nil)
	if got := DefaultLibraryPath(); got != want[0] {
		t.Errorf("DefaultLibraryPath() = %q, want the first candidate %q", got, want[0])
	}
}

func checkResolveError(t *testing.T, err error, want, none []string) {
	t.Helper()
	if !errors.Is(err, ErrLibrary) {
		t.Fatalf("error %v does not wrap ErrLibrary", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
	for _, w := range append(want, "run `make lib` or set ONNXRUNTIME_LIB / --onnxruntime-lib") {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	for _, n := range none {
		if strings.Contains(msg, n) {
			t.Errorf("error %q mentions %q", msg, n)
		}
	}
}

// TestDefaultLibraryPathFindsRepoCache checks that a test run from this
// package's folder finds the cache at the repository root.
func TestDefaultLibraryPathFindsRepoCache(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd)) // internal/runtime -> repository root
	want := filepath.Join(root, cacheRelPath())
	if !isFile(want) {
		if os.Getenv(requireEnv) == "1" && os.Getenv(LibraryEnv) == "" {
			t.Fatalf("%s is missing", want)
		}
		t.Skipf("%s is missing; run `make lib`", want)
	}
	if got := DefaultLibraryPath(); got != want {
		t.Errorf("DefaultLibraryPath() = %q, want %q", got, want)
	}
}

func TestInitIdempotent(t *testing.T) {
	requireORT(t)
	v1, err := Init(ortLib)
	if err != nil {
		t.Fatalf("second Init with the same library: %v", err)
	}
	if v1 == "" {
		t.Error("Init returned an empty version")
	}
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(other); !errors.Is(err, ErrLibrary) || !strings.Contains(err.Error(), "already loaded") {
		t.Errorf("Init with another library = %v, want an ErrLibrary saying one is already loaded", err)
	}
}

// TestInitBadLibrary calls Init in a child process, since a process holds one
// ONNX Runtime environment.
func TestInitBadLibrary(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(text, []byte("this is not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"text file", text, "not a loadable shared library"},
		{"missing file", filepath.Join(dir, "missing.so"), "no such file"},
		{"directory", dir, "is a directory"},
	}
	if libc := mappedLibc(t); libc != "" {
		tests = append(tests, struct {
			name string
			path string
			want string
		}{"another library", libc, "not an ONNX Runtime library"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), initProbeEnv+"="+tt.path)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("probe: %v: %s", err, out)
			}
			msg := string(out)
			if msg == probeOK {
				t.Fatalf("Init(%q) succeeded", tt.path)
			}
			for _, w := range []string{"onnx runtime library", tt.path, tt.want} {
				if !strings.Contains(msg, w) {
					t.Errorf("Init error %q does not mention %q", msg, w)
				}
			}
			if strings.Count(strings.TrimSpace(msg), "\n") > 0 {
				t.Errorf("Init error spans several lines: %q", msg)
			}
		})
	}
}

// mappedLibc returns the C library this cgo test binary has loaded: a real
// shared library that is not ONNX Runtime.
func mappedLibc(t *testing.T) string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 6 && strings.Contains(filepath.Base(fields[5]), "libc.so") {
			return fields[5]
		}
	}
	return ""
}
