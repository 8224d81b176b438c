package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/check"
	"github.com/onnxserve/onnxserve/internal/runtime"
)

// startORT loads ONNX Runtime for an offline command; the returned
// function destroys its environment.
func startORT(lib string) (func() error, error) {
	path, err := runtime.ResolveLibrary(lib)
	if err != nil {
		return nil, err
	}
	if _, err := runtime.Init(path); err != nil {
		return nil, err
	}
	return runtime.Shutdown, nil
}

// withRuntime runs an offline command's work: ONNX Runtime started from
// lib (torn down afterwards, a failure reported on stderr), and a context
// that ends on SIGTERM or SIGINT. It returns run's exit code, or 1 when
// ONNX Runtime does not start.
func withRuntime(cmd, lib string, stderr io.Writer, run func(ctx context.Context) int) int {
	stop, err := startORT(lib)
	if err != nil {
		fmt.Fprintf(stderr, "onnxserve %s: %v\n", cmd, err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintf(stderr, "onnxserve %s: %v\n", cmd, err)
		}
	}()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	return run(ctx)
}

// checkMain is the check command: load and test the repository's models
// as the server would, report, and exit 1 on any failure.
func checkMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("onnxserve check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var models stringList
	repo := fs.String("model-repository", "models", "model repository folder to check")
	fs.Var(&models, "model", "model to check (repeatable; default every model)")
	junit := fs.String("junit", "", "also write the report as JUnit XML to this file")
	requests := fs.Int("latency-requests", check.DefaultLatencyRequests, "requests measured for a model's latency budget (config.yaml check block)")
	lib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, else the copy `make lib` caches)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: onnxserve check [flags]\n\nLoads every selected model and version as the server would, runs each\nversion's golden tests (<version>/tests/*.json) and latency budget, and\nexits 1 if any check fails.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *requests <= 0 {
		fmt.Fprintln(stderr, "onnxserve check: unexpected arguments, or --latency-requests <= 0")
		return 2
	}
	return withRuntime("check", *lib, stderr, func(ctx context.Context) int {
		rep, err := check.Run(ctx, offlineLoader(), check.Config{Root: *repo, Models: models, LatencyRequests: *requests}, zap.NewNop())
		if err != nil {
			fmt.Fprintln(stderr, "onnxserve check:", err)
			return 1
		}
		if err := rep.WriteText(stdout); err != nil {
			fmt.Fprintln(stderr, "onnxserve check:", err)
			return 1
		}
		if *junit != "" {
			if err := writeFileAtomic(*junit, rep.WriteJUnit); err != nil {
				fmt.Fprintln(stderr, "onnxserve check: --junit:", err)
				return 1
			}
		}
		if rep.Failed() > 0 {
			return 1
		}
		return 0
	})
}

// writeFileAtomic writes a file through a temporary beside it, so a
// reader never sees half of it.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".onnxserve-*")
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
