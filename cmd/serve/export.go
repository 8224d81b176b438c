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
	"strings"
	"syscall"
	"time"

	"github.com/onnxserve/onnxserve/internal/payloadlog"
)

// exportMain is the export command: the payload log's files of one model
// joined into a training set (a thin shell over payloadlog.Export).
func exportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("onnxserve export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg payloadlog.ExportConfig
	var since, until, output string
	fs.StringVar(&cfg.Dir, "payload-log-dir", "", "the folder the server's --payload-log-dir wrote (required)")
	fs.StringVar(&cfg.Model, "model", "", "model whose inferences are exported (required)")
	fs.StringVar(&cfg.Version, "version", "", "export only this version's inferences")
	fs.StringVar(&since, "since", "", "export inferences that arrived at or after this RFC 3339 time")
	fs.StringVar(&until, "until", "", "export inferences that arrived before this RFC 3339 time")
	fs.StringVar(&cfg.Format, "format", "", "parquet, jsonl or csv (default from the --output extension, else parquet)")
	fs.StringVar(&output, "output", "", "file to write, created 0600 (required; - for standard output)")
	fs.DurationVar(&cfg.ProgressEvery, "progress", 5*time.Second, "interval of the progress line on standard error; 0 for none")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "onnxserve export: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case cfg.Dir == "":
		return usageErr("--payload-log-dir is required")
	case cfg.Model == "":
		return usageErr("--model is required")
	case output == "":
		return usageErr("--output is required")
	}
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"--since", since, &cfg.Since}, {"--until", until, &cfg.Until}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return usageErr("%s: want an RFC 3339 time such as 2026-12-05T00:00:00Z, got %q", t.flag, t.v)
		}
		*t.dst = v
	}
	if cfg.Format == "" {
		cfg.Format = payloadlog.FormatParquet
		switch strings.ToLower(filepath.Ext(output)) {
		case ".jsonl", ".ndjson":
			cfg.Format = payloadlog.FormatJSONL
		case ".csv":
			cfg.Format = payloadlog.FormatCSV
		}
	}
	switch cfg.Format {
	case payloadlog.FormatParquet, payloadlog.FormatJSONL, payloadlog.FormatCSV:
	default:
		return usageErr("--format: want parquet, jsonl or csv, got %q", cfg.Format)
	}
	if cfg.ProgressEvery > 0 {
		cfg.Progress = stderr
	}
	cfg.Warn = stderr

	out, closeOut, err := createOutput(output, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "onnxserve export: --output:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st, err := payloadlog.Export(ctx, cfg, out)
	if cerr := closeOut(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, "onnxserve export:", err)
		return 1
	}
	fmt.Fprintf(stderr, "onnxserve export: %d rows of %d inferences from %d files to %s (%d lines skipped)\n",
		st.Rows, st.Inferences, st.Files, output, st.Skipped)
	return 0
}

// createOutput opens the export's output: a temporary file beside path,
// renamed over it only when the export succeeded, so a failed run leaves
// no half-written training set; "-" is stdout.
func createOutput(path string, stdout io.Writer) (io.Writer, func(ok bool) error, error) {
	if path == "-" {
		return stdout, func(bool) error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, err
	}
	return f, func(ok bool) error {
		err := f.Close()
		if ok && err == nil {
			if err = os.Rename(f.Name(), path); err == nil {
				return nil
			}
		}
		_ = os.Remove(f.Name())
		return err
	}, nil
}
