package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// PinnedVersion is the ONNX Runtime release that `make lib` fetches into the
// repository's cache. Other builds work too, as long as they provide the C API
// version the binding needs (ONNX Runtime 1.24 or newer).
const PinnedVersion = "1.30.0"

// LibraryEnv names the environment variable that points at a libonnxruntime
// shared library, overriding the cached one.
const LibraryEnv = "ONNXRUNTIME_LIB"

// ErrLibrary is wrapped by every failure to find, load or initialise the ONNX
// Runtime shared library, and by calls made before Init.
var ErrLibrary = errors.New("onnx runtime library")

// libraryFile is the file name the cache holds, the soname of the release.
const libraryFile = "libonnxruntime.so.1"

// env holds the process-wide ONNX Runtime environment: the binding keeps one
// per process, so Init and Shutdown serialise on mu.
var env struct {
	mu      sync.Mutex
	path    string
	version string
}

// libraryPath returns the library Init loaded, or "" before Init.
func libraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.path
}

// cacheRelPath is where `make lib` puts the library, relative to the
// repository root.
func cacheRelPath() string {
	arch := goruntime.GOARCH
	if arch == "amd64" {
		arch = "x64"
	}
	return filepath.Join(".cache", "onnxruntime", PinnedVersion, "linux-"+arch, libraryFile)
}

// libraryCandidates lists, in order of preference and without duplicates,
// the places DefaultLibraryPath looks: the cache under the nearest folder
// holding go.mod (so tests run from a package folder find it), the cache under
// the working directory, and the cache beside the executable's folder (for an
// installed bin/onnxserve next to .cache).
func libraryCandidates() []string {
	rel := cacheRelPath()
	var out []string
	add := func(dir string) {
		p := filepath.Join(dir, rel)
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				add(dir)
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
		add(wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		add(filepath.Dir(filepath.Dir(exe)))
	}
	if len(out) == 0 {
		out = append(out, rel)
	}
	return out
}

// DefaultLibraryPath returns where `make lib` caches the pinned library: the
// first of the candidate places that holds the file, or the first candidate
// when none does. The candidates are <root>/.cache/onnxruntime/<version>/
// linux-<x64|arm64>/libonnxruntime.so.1 for root = the nearest folder above
// the working directory that holds go.mod, the working directory itself, and
// the parent of the executable's folder.
func DefaultLibraryPath() string {
	c := libraryCandidates()
	for _, p := range c {
		if isFile(p) {
			return p
		}
	}
	return c[0]
}

// ResolveLibrary picks the ONNX Runtime library to load: flagValue when it is
// not empty, else $ONNXRUNTIME_LIB, else DefaultLibraryPath. An explicit
// choice is never silently replaced by another. The error, when the chosen
// file does not exist, is one line naming every place looked at.
func ResolveLibrary(flagValue string) (string, error) {
	var tried []string
	switch {
	case flagValue != "":
		if isFile(flagValue) {
			return flagValue, nil
		}
		tried = []string{flagValue + " (--onnxruntime-lib)"}
	case os.Getenv(LibraryEnv) != "":
		p := os.Getenv(LibraryEnv)
		if isFile(p) {
			return p, nil
		}
		tried = []string{p + " ($" + LibraryEnv + ")"}
	default:
		for _, p := range libraryCandidates() {
			if isFile(p) {
				return p, nil
			}
			tried = append(tried, p)
		}
	}
	return "", fmt.Errorf("%w: not found at %s; run `make lib` or set %s / --onnxruntime-lib",
		ErrLibrary, strings.Join(tried, ", "), LibraryEnv)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Init loads the ONNX Runtime shared library at libPath and creates the
// process-wide environment, logging ONNX Runtime's own messages at warning
// level and above. It returns the library's version. Calling it again with
// the same path returns the same version; with another path it fails, since
// one process holds one library. Init is safe for concurrent use.
func Init(libPath string) (version string, err error) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		if env.path == libPath {
			return env.version, nil
		}
		return "", fmt.Errorf("%w: %s is already loaded; cannot also load %s", ErrLibrary, env.path, libPath)
	}
	if !littleEndian() {
		return "", fmt.Errorf("%w: this build assumes a little-endian host", ErrLibrary)
	}
	if st, err := os.Stat(libPath); err != nil {
		return "", fmt.Errorf("%w: %v", ErrLibrary, err)
	} else if st.IsDir() {
		return "", fmt.Errorf("%w: %s is a directory, not a shared library", ErrLibrary, libPath)
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		return "", fmt.Errorf("%w: cannot load %s: %s", ErrLibrary, libPath, describeInitError(err))
	}
	env.path = libPath
	env.version = ort.GetVersion()
	return env.version, nil
}

// describeInitError turns the binding's initialisation errors into one line
// that says what is wrong with the file, keeping the loader's own words.
func describeInitError(err error) string {
	inner := err
	if u := errors.Unwrap(err); u != nil {
		inner = u
	}
	msg := strings.Join(strings.Fields(inner.Error()), " ")
	switch {
	case strings.Contains(msg, "OrtGetApiBase"):
		return "not an ONNX Runtime library (it has no OrtGetApiBase symbol)"
	case strings.Contains(msg, "ORT API base"):
		return "the library does not provide the ONNX Runtime C API version this build needs (ONNX Runtime 1.24 or newer, " + PinnedVersion + " recommended)"
	case strings.Contains(msg, "loading ONNX shared library"):
		// The dynamic loader's message already names the file; keep only
		// its reason.
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			return "not a loadable shared library (" + msg[i+2:] + ")"
		}
	}
	return msg
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// Shutdown destroys the process-wide environment and unloads the library.
// Close every Session first. After Shutdown, Init may be called again.
// Shutdown is safe for concurrent use; without a prior Init it returns an
// error wrapping ErrLibrary.
func Shutdown() error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path == "" {
		return fmt.Errorf("%w: shutdown without init", ErrLibrary)
	}
	env.path, env.version = "", ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("%w: shutdown: %v", ErrLibrary, err)
	}
	return nil
}
