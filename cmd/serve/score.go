package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/score"
)

// Exit statuses of score beyond 0 (every row scored), 1 (the job failed)
// and 2 (usage).
const scoreRowsFailed = 3

// plainProgressEvery is how often a non-terminal progress line is printed.
const plainProgressEvery = 5 * time.Second

// scoreMain is the score command: batch inference over a data file.
func scoreMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("onnxserve score", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg score.Config
	fs.StringVar(&cfg.Root, "model-repository", "models", "model repository folder")
	fs.StringVar(&cfg.Model, "model", "", "model to score with (required)")
	fs.StringVar(&cfg.Version, "version", "", "version to score with (default the newest version the policy serves)")
	fs.StringVar(&cfg.Input, "input", "", "input file: .jsonl, .csv, .npy or .parquet (required)")
	fs.StringVar(&cfg.Output, "output", "", "output file: .jsonl, .csv, .npy or .parquet (required); bad rows go to OUTPUT.errors.jsonl")
	columns := fs.String("columns", "", "CSV or Parquet columns that make up the input row, comma separated, in order (default all but --id-column)")
	fs.StringVar(&cfg.IDColumn, "id-column", "", "input column (JSON key) carried to the output as each row's id")
	batch := fs.String("batch-size", "auto", "rows per run: auto or a number")
	workers := fs.String("workers", "auto", "runs in flight: auto (one per CPU) or a number; each gets CPUs/workers intra-op threads")
	fs.IntVar(&cfg.ChunkRows, "chunk-rows", score.DefaultChunkRows, "input records per checkpoint (what --resume redoes at most)")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue an interrupted run from its last complete chunk")
	fs.BoolVar(&cfg.Overwrite, "overwrite", false, "replace an existing output")
	fs.BoolVar(&cfg.FailFast, "fail-fast", false, "stop at the first bad row")
	progress := fs.String("progress", "auto", "auto (a bar on a terminal, a line every 5s otherwise), bar, plain or none")
	lib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared library (default $ONNXRUNTIME_LIB, else the copy `make lib` caches)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: onnxserve score --model M --input FILE --output FILE [flags]\n\n"+
			"Scores every row of FILE with the model version the server would load.\n"+
			"Exit status: 0 every row scored, 1 the job failed, 2 usage, 3 finished with bad rows.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "onnxserve score:", msg)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case cfg.Model == "" || cfg.Input == "" || cfg.Output == "":
		return usage("--model, --input and --output are required")
	case cfg.Resume && cfg.Overwrite:
		return usage("--resume and --overwrite exclude each other")
	case cfg.ChunkRows <= 0:
		return usage("--chunk-rows must be > 0")
	}
	var err error
	if cfg.BatchSize, err = autoOrCount(*batch); err != nil {
		return usage("--batch-size: " + err.Error())
	}
	if cfg.Workers, err = autoOrCount(*workers); err != nil {
		return usage("--workers: " + err.Error())
	}
	if *columns != "" {
		cfg.Columns = strings.Split(*columns, ",")
	}
	switch *progress {
	case "auto":
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			cfg.Progress = &barProgress{w: stderr}
		} else {
			cfg.Progress = &plainProgress{w: stderr}
		}
	case "bar":
		cfg.Progress = &barProgress{w: stderr}
	case "plain":
		cfg.Progress = &plainProgress{w: stderr}
	case "none":
	default:
		return usage("--progress: want auto, bar, plain or none")
	}
	cfg.CPUs = runtime.AvailableCPUs()

	return withRuntime("score", *lib, stderr, func(ctx context.Context) int {
		sum, err := score.Run(ctx, offlineLoader(), cfg)
		if err != nil {
			fmt.Fprintln(stderr, "onnxserve score:", err)
			if _, statErr := os.Stat(cfg.Output + ".parts"); statErr == nil {
				fmt.Fprintf(stderr, "onnxserve score: the completed chunks are kept in %s.parts; --resume continues from them\n", cfg.Output)
			}
			return 1
		}
		rate := float64(sum.Rows+sum.Errors-sum.Resumed) / sum.Elapsed.Seconds()
		fmt.Fprintf(stdout, "scored %s v%s: %d rows, %d errors, %.0f rows/s, %s (batch %d, %d workers × %d threads",
			sum.Model, sum.Version, sum.Rows, sum.Errors, rate, sum.Elapsed.Round(time.Millisecond), sum.BatchSize, sum.Workers, sum.Threads)
		if sum.Resumed > 0 {
			fmt.Fprintf(stdout, "; resumed after %d records", sum.Resumed)
		}
		fmt.Fprintf(stdout, ") → %s\n", cfg.Output)
		if sum.Errors > 0 {
			fmt.Fprintf(stdout, "bad rows: %s\n", score.ErrorsPath(cfg.Output))
			return scoreRowsFailed
		}
		return 0
	})
}

// autoOrCount parses "auto" (0) or a positive count.
func autoOrCount(s string) (int, error) {
	if s == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want auto or a positive number, got %q", s)
	}
	return n, nil
}

// barProgress draws a progress bar with rows/s and the time left.
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (p *barProgress) Start(total, done int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("scoring"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
	_ = p.bar.Set64(done)
}

func (p *barProgress) Add(n int64) { _ = p.bar.Add64(n) }
func (p *barProgress) Finish()     { _ = p.bar.Finish() }

// plainProgress prints a progress line every few seconds, for logs.
type plainProgress struct {
	w           io.Writer
	total, done int64
	start       time.Time
	startDone   int64
	last        time.Time
}

func (p *plainProgress) Start(total, done int64) {
	p.total, p.done, p.startDone = total, done, done
	p.start, p.last = time.Now(), time.Now()
}

func (p *plainProgress) Add(n int64) {
	p.done += n
	if time.Since(p.last) >= plainProgressEvery {
		p.last = time.Now()
		p.print()
	}
}

func (p *plainProgress) print() {
	el := time.Since(p.start)
	rate := float64(p.done-p.startDone) / el.Seconds()
	line := fmt.Sprintf("scored %d rows", p.done)
	if p.total > 0 {
		line = fmt.Sprintf("scored %d of %d rows (%.1f%%)", p.done, p.total, 100*float64(p.done)/float64(p.total))
		if rate > 0 && p.done < p.total {
			line += fmt.Sprintf(", ETA %s", time.Duration(float64(p.total-p.done)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	fmt.Fprintf(p.w, "%s, %.0f rows/s\n", line, rate)
}

func (p *plainProgress) Finish() {}
