package payloadlog

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// logToFiles serves n inferences of the fake simple model (request i has
// rows(i) rows) through a Logger with a file sink that rotates every few
// lines, and returns the directory once everything is written.
func logToFiles(t *testing.T, n int, rows func(int) int, p *Policy) string {
	t.Helper()
	return logToFilesThen(t, n, rows, p, nil)
}

// logToFilesThen is logToFiles with after called once the inferences are
// answered, before the sinks close.
func logToFilesThen(t *testing.T, n int, rows func(int) int, p *Policy, after func(*Logger)) string {
	t.Helper()
	dir := t.TempDir()
	fs, err := NewFileSink(FileConfig{Dir: dir, MaxBytes: 16 << 10}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, err := New(Config{Source: "test", QueueSize: 4 * n}, map[string]Sink{"file": fs}, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	l.SetPolicy("simple", p)
	s := newSimpleServer(t, l)
	for i := range n {
		if _, err := s.Infer(context.Background(), simpleRequest(i, rows(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if after != nil {
		after(l)
	}
	closeLogger(t, l)
	if d := counterValue(t, reg, "onnxserve_payload_log_dropped_total", "file"); d != 0 {
		t.Fatalf("%v events dropped", d)
	}
	return dir
}

// exportRow is one exported row as the test reads it back.
type exportRow struct {
	id, version string
	row         int
	at          time.Time
	vals        map[string]float64
	present     map[string]bool
}

func runExport(t *testing.T, cfg ExportConfig) ([]byte, string, ExportStats) {
	t.Helper()
	var out, warn bytes.Buffer
	cfg.Warn = &warn
	if cfg.Model == "" {
		cfg.Model = "simple"
	}
	st, err := Export(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("Export: %v (warnings: %s)", err, warn.String())
	}
	return out.Bytes(), warn.String(), st
}

func readJSONL(t *testing.T, b []byte) []exportRow {
	t.Helper()
	var rows []exportRow
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		r := exportRow{id: m["id"].(string), version: m["model_version"].(string), row: int(m["row"].(float64)),
			vals: map[string]float64{}, present: map[string]bool{}}
		r.at, _ = time.Parse(time.RFC3339Nano, m["time"].(string))
		for k, v := range m {
			r.present[k] = true
			if f, ok := v.(float64); ok {
				r.vals[k] = f
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func readCSV(t *testing.T, b []byte) []exportRow {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	var rows []exportRow
	for _, rec := range recs[1:] {
		r := exportRow{vals: map[string]float64{}, present: map[string]bool{}}
		for i, v := range rec {
			switch head[i] {
			case "id":
				r.id = v
			case "model_version":
				r.version = v
			case "time":
				r.at, _ = time.Parse(time.RFC3339Nano, v)
			case "row":
				r.row, _ = strconv.Atoi(v)
			default:
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					r.vals[head[i]] = f
				}
			}
			r.present[head[i]] = true
		}
		rows = append(rows, r)
	}
	return rows
}

func readParquet(t *testing.T, b []byte) []exportRow {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	cols := f.Schema().Columns()
	r := parquet.NewReader(f)
	defer r.Close()
	var rows []exportRow
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, pr := range buf[:n] {
			er := exportRow{vals: map[string]float64{}, present: map[string]bool{}}
			for _, v := range pr {
				name := cols[v.Column()][0]
				er.present[name] = true
				switch name {
				case "id":
					er.id = string(v.ByteArray())
				case "model_version":
					er.version = string(v.ByteArray())
				case "time":
					er.at = time.Unix(0, v.Int64())
				case "row":
					er.row = int(v.Int64())
				default:
					switch {
					case v.IsNull():
					case v.Kind() == parquet.Double:
						er.vals[name] = v.Double()
					default:
						er.vals[name] = float64(v.Int64())
					}
				}
			}
			rows = append(rows, er)
		}
		if err != nil {
			break
		}
	}
	return rows
}

// checkRows checks exported rows against what the fake simple model got
// and answered: request i, row r has INPUT0_j = i+16r+j, INPUT1 redacted
// (absent), OUTPUT0_j = INPUT0_j+1, OUTPUT1_j = INPUT0_j-1.
func checkRows(t *testing.T, rows []exportRow, n int, nrows func(int) int) {
	t.Helper()
	want := 0
	for i := range n {
		want += nrows(i)
	}
	if len(rows) != want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	k := 0
	for i := range n {
		for r := range nrows(i) {
			row := rows[k]
			k++
			if row.id != fmt.Sprintf("req-%d", i) || row.version != "1" || row.row != r || row.at.IsZero() {
				t.Fatalf("row %d: id %q version %q row %d time %v; want req-%d, 1, %d", k, row.id, row.version, row.row, row.at, i, r)
			}
			if row.present["INPUT1_0"] || row.present["INPUT1"] {
				t.Fatalf("row %d holds the redacted INPUT1", k)
			}
			for j := range 16 {
				x := float64(i + 16*r + j)
				for name, v := range map[string]float64{"INPUT0": x, "OUTPUT0": x + 1, "OUTPUT1": x - 1} {
					col := fmt.Sprintf("%s_%d", name, j)
					if got, ok := row.vals[col]; !ok || got != v {
						t.Fatalf("row %d (%s row %d): %s = %v (present %v), want %v", k, row.id, r, col, got, ok, v)
					}
				}
			}
		}
	}
}

// TestExportJoinsExactly: every logged inference row comes out once, in
// each format, with the values that were sent and answered.
func TestExportJoinsExactly(t *testing.T) {
	const n = 60
	rows := func(i int) int { return 1 + i%3 }
	dir := logToFiles(t, n, rows, &Policy{Sample: 1, Mode: ModeAll, Redact: []string{"INPUT1"}})
	files, _ := logFiles(dir)
	if len(files) < 3 {
		t.Fatalf("%d log files; the test wants rotation between them", len(files))
	}
	read := map[string]func(*testing.T, []byte) []exportRow{FormatJSONL: readJSONL, FormatCSV: readCSV, FormatParquet: readParquet}
	for _, format := range []string{FormatJSONL, FormatCSV, FormatParquet} {
		t.Run(format, func(t *testing.T) {
			out, warn, st := runExport(t, ExportConfig{Dir: dir, Format: format})
			if warn != "" || st.Skipped != 0 {
				t.Errorf("warnings on a clean log: %s", warn)
			}
			if st.Inferences != n {
				t.Errorf("%d inferences, want %d", st.Inferences, n)
			}
			checkRows(t, read[format](t, out), n, rows)
		})
	}
	t.Run("progress", func(t *testing.T) {
		var progress bytes.Buffer
		_, _, st := runExport(t, ExportConfig{Dir: dir, Format: FormatCSV, Progress: &progress, ProgressEvery: time.Nanosecond})
		want := fmt.Sprintf("export: %d files, %d lines, %d inferences, %d rows written, 0 skipped\n", st.Files, st.Lines, n, st.Rows)
		if !strings.HasSuffix(progress.String(), want) {
			t.Errorf("progress %q, want it to end with %q", progress.String(), want)
		}
	})
	t.Run("version and time window", func(t *testing.T) {
		all := readJSONL(t, must(runExport(t, ExportConfig{Dir: dir, Format: FormatJSONL})))
		mid := all[len(all)/2].at
		out, _, _ := runExport(t, ExportConfig{Dir: dir, Format: FormatJSONL, Since: mid})
		later := readJSONL(t, out)
		if len(later) == 0 || len(later) >= len(all) || later[0].at.Before(mid) {
			t.Errorf("--since %v kept %d of %d rows", mid, len(later), len(all))
		}
		var w bytes.Buffer
		if _, err := Export(context.Background(), ExportConfig{Dir: dir, Model: "simple", Version: "2", Format: FormatJSONL, Warn: &w}, &bytes.Buffer{}); err == nil {
			t.Error("version 2, never logged, exported rows")
		}
	})
}

func must(b []byte, _ string, _ ExportStats) []byte { return b }

// TestExportSkipsCutLines: a crash that cut the last line, and a line of
// garbage, are skipped with a warning naming file and line; the rest is
// exported.
func TestExportSkipsCutLines(t *testing.T) {
	const n = 10
	one := func(int) int { return 1 }
	dir := logToFiles(t, n, one, &Policy{Sample: 1, Mode: ModeAll, Redact: []string{"INPUT1"}})
	files, _ := logFiles(dir)
	last := files[len(files)-1]
	if strings.HasSuffix(last, gzSuffix) {
		t.Fatalf("last file %s is compressed; the current one should be plain", last)
	}
	b, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(b, []byte("\n"))
	// The crash: a request event cut half-way, and before it a broken line.
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	firstLine := b[:bytes.IndexByte(b, '\n')+1]
	if _, err := f.Write(append([]byte("not json\n"), firstLine[:len(firstLine)/2]...)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, warn, st := runExport(t, ExportConfig{Dir: dir, Format: FormatJSONL})
	name := filepath.Base(last)
	for _, want := range []string{
		fmt.Sprintf("%s:%d: skipped: not a JSON event", name, lines+1),
		fmt.Sprintf("%s:%d: skipped: line cut short", name, lines+2),
	} {
		if !strings.Contains(warn, want) {
			t.Errorf("warnings %q lack %q", warn, want)
		}
	}
	if st.Skipped != 2 {
		t.Errorf("%d skipped, want 2", st.Skipped)
	}
	checkRows(t, readJSONL(t, out), n, one)
}

// TestExportJoinsFeedback: ground truth posted as feedback (files later
// than its request) lands in exactly the rows of the requests it was
// posted for, with the values posted; the first of two posts wins, and
// feedback for a request never logged adds no row.
func TestExportJoinsFeedback(t *testing.T) {
	const n = 30
	rows := func(i int) int { return 1 + i%2 }
	truthOf := func(i, r int) float64 { return float64(1000*i + r) }
	posted := func(i int) bool { return i%3 == 0 }
	dir := logToFilesThen(t, n, rows, &Policy{Sample: 1, Mode: ModeAll, Redact: []string{"INPUT1"}}, func(l *Logger) {
		for i := range n {
			if !posted(i) {
				continue
			}
			var truth []float64
			for r := range rows(i) {
				truth = append(truth, truthOf(i, r))
			}
			b, _ := json.Marshal(truth)
			l.LogFeedback("simple", "1", fmt.Sprintf("req-%d", i), b)
			if i == 0 {
				l.LogFeedback("simple", "1", "req-0", json.RawMessage(`[-1]`)) // a second post
			}
		}
		l.LogFeedback("simple", "1", "never-logged", json.RawMessage(`[7]`))
		l.LogFeedback("unlogged-model", "1", "req-1", json.RawMessage(`[7]`))
	})
	read := map[string]func(*testing.T, []byte) []exportRow{FormatJSONL: readJSONL, FormatCSV: readCSV, FormatParquet: readParquet}
	for _, format := range []string{FormatJSONL, FormatCSV, FormatParquet} {
		t.Run(format, func(t *testing.T) {
			out, warn, _ := runExport(t, ExportConfig{Dir: dir, Format: format})
			if warn != "" {
				t.Errorf("warnings: %s", warn)
			}
			got := read[format](t, out)
			checkRows(t, got, n, rows)
			k := 0
			for i := range n {
				for r := range rows(i) {
					v, ok := got[k].vals[TruthColumn]
					k++
					switch {
					case posted(i) && (!ok || v != truthOf(i, r)):
						t.Errorf("req-%d row %d: ground truth %v (present %v), want %v", i, r, v, ok, truthOf(i, r))
					case !posted(i) && ok:
						t.Errorf("req-%d row %d: ground truth %v, none was posted", i, r, v)
					}
				}
			}
		})
	}
}
