package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/drift"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// profileBatch is how many reference rows run through the model at once.
const profileBatch = 64

// profileOptions are the flags of `onnxserve profile`.
type profileOptions struct {
	root, model, version, data, output string
	rows                               int64
	bins                               int
}

func profileMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("onnxserve profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o profileOptions
	fs.StringVar(&o.root, "model-repository", "models", "model repository folder")
	fs.StringVar(&o.model, "model", "", "model to profile (required)")
	fs.StringVar(&o.version, "version", "", "version to profile (default the newest version the policy serves)")
	fs.StringVar(&o.data, "data", "", "reference data: .jsonl, .csv, .npy or .parquet (required)")
	fs.Int64Var(&o.rows, "rows", 0, "use at most this many rows (0: all)")
	fs.IntVar(&o.bins, "bins", drift.DefaultBins, "quantile bins per numeric feature")
	fs.StringVar(&o.output, "output", "", "where to write the profile (default profile.json in the version folder)")
	lib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, else the copy `make lib` caches)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: onnxserve profile --model M --data FILE [flags]\n\n"+
			"Runs reference data through the model version the server would load and writes\n"+
			"its drift reference, profile.json, into the version folder.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "onnxserve profile: unexpected argument %q\n", fs.Arg(0))
		return 2
	case o.model == "" || o.data == "":
		fmt.Fprintln(stderr, "onnxserve profile: --model and --data are required")
		return 2
	case o.rows < 0 || o.bins < 1:
		fmt.Fprintln(stderr, "onnxserve profile: --rows must be >= 0 and --bins >= 1")
		return 2
	}
	return withRuntime("profile", *lib, stderr, func(ctx context.Context) int {
		path, prof, err := writeProfile(ctx, offlineLoader(), o)
		if err != nil {
			fmt.Fprintln(stderr, "onnxserve profile:", err)
			return 1
		}
		fmt.Fprintf(stdout, "profiled %s from %d rows of %s → %s\n", o.model, prof.Rows, o.data, path)
		return 0
	})
}

// writeProfile makes the profile of o.data and writes it; it returns the
// path written.
func writeProfile(ctx context.Context, l serving.Loader, o profileOptions) (string, *drift.Profile, error) {
	m, err := repository.ScanModel(o.root, o.model)
	if err != nil {
		return "", nil, fmt.Errorf("model %q: %w", o.model, err)
	}
	if m.Err != nil {
		return "", nil, fmt.Errorf("model %q: config.yaml: %w", m.Name, m.Err)
	}
	ver, err := pickProfileVersion(m, o.version)
	if err != nil {
		return "", nil, err
	}
	sess, err := serving.Open(ctx, l, m, ver, m.Config)
	if err != nil {
		return "", nil, err
	}
	defer sess.Close()
	prof, err := buildProfile(ctx, sess, m.Config, o)
	if err != nil {
		return "", nil, err
	}
	path := o.output
	if path == "" {
		path = filepath.Join(filepath.Dir(ver.Path), drift.ProfileFile)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".profile-*.json")
	if err != nil {
		return "", nil, err
	}
	defer os.Remove(f.Name())
	if _, err := prof.WriteTo(f); err != nil {
		f.Close()
		return "", nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		return "", nil, err
	}
	return path, prof, os.Rename(f.Name(), path)
}

func pickProfileVersion(m repository.Model, want string) (repository.Version, error) {
	if len(m.Selected) == 0 {
		return repository.Version{}, fmt.Errorf("model %q: no version to serve", m.Name)
	}
	n := m.Selected[len(m.Selected)-1]
	if want != "" {
		v, err := strconv.ParseInt(want, 10, 64)
		if err != nil || !slices.Contains(m.Selected, v) {
			return repository.Version{}, fmt.Errorf("model %q: version %q not found (served: %v)", m.Name, want, m.Selected)
		}
		n = v
	}
	for _, v := range m.Versions {
		if v.Number == n {
			return v, nil
		}
	}
	return repository.Version{}, fmt.Errorf("model %q: version %d not found", m.Name, n)
}

// buildProfile runs the reference rows through sess in batches and
// profiles inputs and outputs. A malformed record stops it with its line.
func buildProfile(ctx context.Context, sess *serving.Session, cfg repository.Config, o profileOptions) (*drift.Profile, error) {
	batching := sess.Batching()
	var modes drift.Modes
	if cfg.Drift != nil {
		modes = drift.ConfigOf(cfg.Drift).Modes
	}
	b, err := drift.NewBuilder(sess.Inputs(), sess.Outputs(), modes, o.bins)
	if err != nil {
		return nil, err
	}
	rowSpecs := slices.Clone(sess.Inputs())
	for i := range rowSpecs {
		if batching && len(rowSpecs[i].Shape) > 0 {
			rowSpecs[i].Shape = rowSpecs[i].Shape[1:]
		}
	}
	rd, err := dataset.Open(o.data, dataset.ReadOptions{Inputs: rowSpecs, Batched: batching})
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	defer rd.Close()
	var pending [][]tensor.Tensor
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		in, err := stackRows(pending, batching)
		if err != nil {
			return err
		}
		pending = pending[:0]
		out, err := sess.Run(ctx, in)
		if err != nil {
			return err
		}
		return b.Add(in, out)
	}
	seen := int64(0)
	for o.rows == 0 || seen < o.rows {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.data, err)
		}
		if row.Err != nil {
			if row.Line > 0 {
				return nil, fmt.Errorf("%s line %d: %w", o.data, row.Line, row.Err)
			}
			return nil, fmt.Errorf("%s record %d: %w", o.data, row.Index, row.Err)
		}
		seen++
		pending = append(pending, row.Inputs)
		if !batching || len(pending) == profileBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if seen == 0 {
		return nil, fmt.Errorf("%s: no rows", o.data)
	}
	return b.Profile(), nil
}

// stackRows makes one batch of rows: each input's rows concatenated along
// a new first dimension (or the one row as it is, without batching).
func stackRows(rows [][]tensor.Tensor, batching bool) ([]tensor.Tensor, error) {
	if !batching {
		return rows[0], nil
	}
	out := make([]tensor.Tensor, len(rows[0]))
	parts := make([]tensor.Tensor, len(rows))
	for i := range out {
		for r, row := range rows {
			t := row[i]
			t.Shape = append([]int64{1}, t.Shape...)
			parts[r] = t
		}
		t, err := tensor.Concat(parts, nil)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}
