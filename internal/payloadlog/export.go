package payloadlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ExportConfig selects what Export reads and how it writes.
type ExportConfig struct {
	// Dir is the file sink's directory (--payload-log-dir).
	Dir string
	// Model selects the model's events; required.
	Model string
	// Version, when set, selects the events of that version only.
	Version string
	// Since and Until, when not zero, keep inferences that arrived in
	// [Since, Until).
	Since, Until time.Time
	// Format is FormatParquet, FormatJSONL or FormatCSV.
	Format string
	// Progress, when not nil, gets a progress line every ProgressEvery.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Warn gets one line per skipped line or inference, naming file and
	// line; nil discards them.
	Warn io.Writer
}

// The export formats.
const (
	FormatParquet = "parquet"
	FormatJSONL   = "jsonl"
	FormatCSV     = "csv"
)

// ExportStats counts what Export read and wrote.
type ExportStats struct {
	Files, Lines, Inferences, Rows, Skipped int
}

// ErrNoRows: the log holds no inference of the selection.
var ErrNoRows = errors.New("no logged inference matches")

// maxLine bounds one log line; a longer one is skipped as malformed.
const maxLine = 256 << 20

// logLine is the part of a file line (a structured CloudEvent) export reads.
type logLine struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Time    time.Time       `json:"time"`
	Model   string          `json:"inferenceservicename"`
	Version string          `json:"modelversion"`
	Data    json.RawMessage `json:"data"`
}

// where names a line for warnings.
type where struct {
	file string
	line int
}

func (w where) String() string { return fmt.Sprintf("%s:%d", w.file, w.line) }

// Export reads the payload log files of cfg.Dir in order and writes one row
// per inference row to out: the arrival time, version, request id, row
// index, each input feature and each prediction. A request event and the
// response event of the same id that follows it (the file sink writes them
// one after the other) make one inference; either alone is exported with
// the other's columns empty. When the model has feedback events, a last
// column holds the ground truth posted for each row (null where none was),
// found by a first pass over the files. It streams: memory holds one
// inference, the writer's buffer (for Parquet, one row group) and the
// feedback's ground truth, whatever the size of the logged requests.
// Lines that do not parse (a crash cut the last one short) and inferences
// whose columns differ from the first one's are skipped with a warning
// naming file and line.
func Export(ctx context.Context, cfg ExportConfig, out io.Writer) (ExportStats, error) {
	var st ExportStats
	if cfg.Model == "" {
		return st, errors.New("no model given")
	}
	switch cfg.Format {
	case FormatParquet, FormatJSONL, FormatCSV:
	default:
		return st, fmt.Errorf("format %q: want %s, %s or %s", cfg.Format, FormatParquet, FormatJSONL, FormatCSV)
	}
	files, err := logFiles(cfg.Dir)
	if err != nil {
		return st, err
	}
	x := &exporter{cfg: cfg, out: out, st: &st, lastProgress: time.Now()}
	if x.cfg.Warn == nil {
		x.cfg.Warn = io.Discard
	}
	// Ground truth comes back long after its request, often files later:
	// a first pass gathers the model's feedback, the second joins it.
	x.feedback, x.pass1 = map[string][]json.RawMessage{}, true
	for _, f := range files {
		if err := x.file(ctx, f); err != nil {
			return st, err
		}
	}
	x.pass1 = false
	for _, f := range files {
		if err := x.file(ctx, f); err != nil {
			return st, err
		}
		st.Files++
	}
	if err := x.flush(); err != nil {
		return st, err
	}
	if x.w == nil {
		return st, fmt.Errorf("model %q in %s: %w", cfg.Model, cfg.Dir, ErrNoRows)
	}
	if err := x.w.close(); err != nil {
		return st, err
	}
	x.progress(true)
	return st, nil
}

// logFiles lists the payload log files of dir in start-time order. A file
// present both plain and gzipped (a crash between compressing and
// removing) is read once, from the archive, which is complete.
func logFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, filePrefix) {
			continue
		}
		if strings.HasSuffix(n, fileSuffix) || strings.HasSuffix(n, fileSuffix+gzSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, fileSuffix) && slices.Contains(names, n+gzSuffix) {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	return out, nil
}

// exporter is one Export run's state.
type exporter struct {
	cfg     ExportConfig
	out     io.Writer
	st      *ExportStats
	w       rowWriter
	cols    []column
	pending *logged // a request waiting for its response
	// pass1 is the first pass, which reads feedback alone, silently.
	pass1 bool
	// feedback is the ground truth per row of each request id with
	// feedback; truthKind the type of all its values.
	feedback     map[string][]json.RawMessage
	truthKind    kind
	pendingAt    where
	lastProgress time.Time
}

// logged is one decoded request or response of the selected model.
type logged struct {
	typ, id, version string
	at               time.Time
	tensors          []logTensor
}

// logTensor is a tensor of an event body, its data left as JSON values.
type logTensor struct {
	Name     string            `json:"name"`
	Shape    []int64           `json:"shape"`
	Datatype string            `json:"datatype"`
	Data     []json.RawMessage `json:"data"`
}

func (x *exporter) file(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, gzSuffix) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			if !x.pass1 {
				x.skip(where{filepath.Base(path), 0}, "not a readable gzip file: %v", err)
			}
			return nil
		}
		defer zr.Close()
		r = zr
	}
	br := bufio.NewReaderSize(r, 1<<20)
	name := filepath.Base(path)
	for n := 1; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			x.progress(false)
		}
		line, err := readLine(br)
		at := where{name, n}
		if x.pass1 {
			if err == nil {
				x.feedbackLine(line)
				continue
			}
			if errors.Is(err, errLineTooLong) {
				continue
			}
			return nil
		}
		switch {
		case err == nil:
			x.st.Lines++
			if err := x.line(line, at); err != nil {
				return err
			}
		case errors.Is(err, errLineTooLong):
			x.st.Lines++
			x.skip(at, "line longer than %d bytes", maxLine)
		case errors.Is(err, errCutLine):
			x.st.Lines++
			x.skip(at, "line cut short (the writer stopped mid-line)")
			return nil
		case errors.Is(err, io.EOF):
			return nil
		default:
			// A gzip archive cut short reads as an unexpected EOF: what
			// came before was exported; the rest is lost.
			x.skip(at, "the rest of the file: %v", err)
			return nil
		}
	}
}

var (
	errLineTooLong = errors.New("line longer than the limit")
	errCutLine     = errors.New("last line has no end")
)

// readLine returns one line without its newline. At the end of input it
// returns io.EOF, or errCutLine when the last line has no newline; a line
// beyond maxLine is discarded with errLineTooLong.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxLine {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		switch {
		case tooLong && (err == nil || errors.Is(err, io.EOF)):
			return nil, errLineTooLong
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return nil, errCutLine
		default:
			return nil, err
		}
	}
}

// feedbackLine keeps the ground truth of one feedback event of the
// selected model; the first feedback of an id wins, as in the quality
// loop. A line that does not parse is left to the second pass to report.
func (x *exporter) feedbackLine(line []byte) {
	if !bytes.Contains(line, []byte(TypeFeedback)) {
		return
	}
	var l logLine
	if json.Unmarshal(line, &l) != nil || l.Type != TypeFeedback || l.Model != x.cfg.Model {
		return
	}
	if _, dup := x.feedback[l.ID]; dup {
		return
	}
	var body struct {
		GroundTruth []json.RawMessage `json:"ground_truth"`
	}
	if json.Unmarshal(l.Data, &body) != nil || len(body.GroundTruth) == 0 {
		return
	}
	for _, v := range body.GroundTruth {
		if len(v) > 0 && v[0] == '"' {
			x.truthKind = kindString
		}
	}
	if len(x.feedback) == 0 && x.truthKind != kindString {
		x.truthKind = kindFloat
	}
	x.feedback[l.ID] = body.GroundTruth
}

// line handles one complete line.
func (x *exporter) line(line []byte, at where) error {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	var l logLine
	if err := json.Unmarshal(line, &l); err != nil {
		x.skip(at, "not a JSON event: %v", err)
		return nil
	}
	if l.Model != x.cfg.Model || (x.cfg.Version != "" && l.Version != x.cfg.Version) {
		return nil
	}
	ev := &logged{typ: l.Type, id: l.ID, version: l.Version, at: l.Time}
	var body struct {
		Inputs  []logTensor `json:"inputs"`
		Outputs []logTensor `json:"outputs"`
		Error   string      `json:"error"`
	}
	switch l.Type {
	case TypeRequest, TypeResponse:
		if err := json.Unmarshal(l.Data, &body); err != nil {
			x.skip(at, "event %s: body is not v2 JSON: %v", l.ID, err)
			return nil
		}
	default:
		return nil
	}
	if l.Type == TypeRequest {
		ev.tensors = body.Inputs
		if err := x.flush(); err != nil {
			return err
		}
		x.pending, x.pendingAt = ev, at
		return nil
	}
	if body.Error != "" {
		// A failed request has no prediction to learn from.
		if x.pending != nil && x.pending.id == l.ID {
			x.pending = nil
		}
		return nil
	}
	ev.tensors = body.Outputs
	req := x.pending
	if req != nil && req.id != l.ID {
		if err := x.flush(); err != nil {
			return err
		}
		req = nil
	}
	x.pending = nil
	reqAt := at
	if req != nil {
		reqAt = x.pendingAt
	}
	return x.inference(req, ev, reqAt)
}

// flush exports a request whose response never came (mode request).
func (x *exporter) flush() error {
	if x.pending == nil {
		return nil
	}
	req, at := x.pending, x.pendingAt
	x.pending = nil
	return x.inference(req, nil, at)
}

func (x *exporter) skip(at where, format string, args ...any) {
	x.st.Skipped++
	fmt.Fprintf(x.cfg.Warn, "export: %s: skipped: %s\n", at, fmt.Sprintf(format, args...))
}

func (x *exporter) progress(final bool) {
	if x.cfg.Progress == nil || (!final && time.Since(x.lastProgress) < x.cfg.ProgressEvery) {
		return
	}
	x.lastProgress = time.Now()
	fmt.Fprintf(x.cfg.Progress, "export: %d files, %d lines, %d inferences, %d rows written, %d skipped\n",
		x.st.Files, x.st.Lines, x.st.Inferences, x.st.Rows, x.st.Skipped)
}

// inference writes the rows of one inference: req and resp, either may be
// nil (not both).
func (x *exporter) inference(req, resp *logged, at where) error {
	first := req
	if first == nil {
		first = resp
	}
	if !x.cfg.Since.IsZero() && first.at.Before(x.cfg.Since) || !x.cfg.Until.IsZero() && !first.at.Before(x.cfg.Until) {
		return nil
	}
	version := first.version
	if resp != nil {
		version = resp.version
	}
	var ins, outs []logTensor
	if req != nil {
		ins = req.tensors
	}
	if resp != nil {
		outs = resp.tensors
	}
	rows, cols, err := layout(ins, outs)
	if err != nil {
		x.skip(at, "inference %s: %v", first.id, err)
		return nil
	}
	truth, hasTruth := x.feedback[first.id]
	if len(x.feedback) > 0 {
		cols = append(cols, column{TruthColumn, x.truthKind})
		if hasTruth && len(truth) != rows {
			x.skip(at, "inference %s: feedback holds %d ground-truth rows for %d rows", first.id, len(truth), rows)
			return nil
		}
	}
	if x.w == nil {
		x.cols = cols
		if x.w, err = newRowWriter(x.cfg.Format, x.out, cols); err != nil {
			return err
		}
	} else if !sameColumns(x.cols, cols) {
		x.skip(at, "inference %s: its columns differ from the first inference's (another signature or redact list)", first.id)
		return nil
	}
	vals := make([]any, len(fixedColumns)+len(cols))
	for r := range rows {
		vals[0], vals[1], vals[2], vals[3] = first.at, version, first.id, int64(r)
		i := len(fixedColumns)
		for _, ts := range [][]logTensor{ins, outs} {
			for _, t := range ts {
				per := len(t.Data) / rows
				for _, raw := range t.Data[r*per : (r+1)*per] {
					v, err := value(raw, cols[i-len(fixedColumns)].kind)
					if err != nil {
						x.skip(at, "inference %s: tensor %s: %v", first.id, t.Name, err)
						return nil
					}
					vals[i] = v
					i++
				}
			}
		}
		if len(x.feedback) > 0 {
			vals[i] = nil
			if hasTruth {
				if vals[i], err = value(truth[r], x.truthKind); err != nil {
					x.skip(at, "inference %s: ground truth: %v", first.id, err)
					return nil
				}
			}
		}
		if err := x.w.write(vals); err != nil {
			return err
		}
		x.st.Rows++
	}
	x.st.Inferences++
	return nil
}

// kind is a column's value type.
type kind uint8

const (
	kindFloat kind = iota
	kindInt
	kindBool
	kindString
	kindTime
)

func kindOf(datatype string) (kind, error) {
	switch datatype {
	case "FP16", "BF16", "FP32", "FP64":
		return kindFloat, nil
	case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
		return kindInt, nil
	case "BOOL":
		return kindBool, nil
	case "BYTES":
		return kindString, nil
	}
	return 0, fmt.Errorf("unknown datatype %q", datatype)
}

// column is one exported column.
type column struct {
	name string
	kind kind
}

// TruthColumn is the column of the ground truth posted as feedback, last
// in every row when the model has any feedback; null for rows without.
const TruthColumn = "ground_truth"

// fixedColumns open every row.
var fixedColumns = []column{{"time", kindTime}, {"model_version", kindString}, {"id", kindString}, {"row", kindInt}}

func sameColumns(a, b []column) bool { return slices.Equal(a, b) }

// layout finds an inference's row count and its feature columns: a tensor
// whose first dimension is the row count gives one column per element of a
// row (name, or name_j when a row holds several); when the tensors share no
// first dimension (a model without a batch dimension) the inference is one
// row.
func layout(ins, outs []logTensor) (int, []column, error) {
	all := append(slices.Clip(ins), outs...)
	if len(all) == 0 {
		return 0, nil, errors.New("no tensors")
	}
	rows := -1
	for _, t := range all {
		if len(t.Shape) == 0 || (rows >= 0 && t.Shape[0] != int64(rows)) {
			rows = 1
			break
		}
		rows = int(t.Shape[0])
	}
	if rows < 1 {
		return 0, nil, errors.New("no rows")
	}
	var cols []column
	seen := map[string]bool{TruthColumn: true}
	for _, c := range fixedColumns {
		seen[c.name] = true
	}
	for _, t := range all {
		k, err := kindOf(t.Datatype)
		if err != nil {
			return 0, nil, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		if len(t.Data)%rows != 0 {
			return 0, nil, fmt.Errorf("tensor %s: %d elements do not split into %d rows", t.Name, len(t.Data), rows)
		}
		per := len(t.Data) / rows
		for j := range per {
			name := t.Name
			if per > 1 {
				name = fmt.Sprintf("%s_%d", t.Name, j)
			}
			if seen[name] {
				return 0, nil, fmt.Errorf("column %s twice (an input and an output of one name?)", name)
			}
			seen[name] = true
			cols = append(cols, column{name, k})
		}
	}
	return rows, cols, nil
}

// value converts one JSON element to the column's Go value; null (a NaN
// or infinity, which JSON cannot spell) is nil.
func value(raw json.RawMessage, k kind) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var err error
	switch k {
	case kindFloat:
		var f float64
		if err = json.Unmarshal(raw, &f); err == nil {
			return f, nil
		}
	case kindInt:
		// A UINT64 beyond int64's range is an error here, never wrapped.
		var n int64
		if err = json.Unmarshal(raw, &n); err == nil {
			return n, nil
		}
	case kindBool:
		var b bool
		if err = json.Unmarshal(raw, &b); err == nil {
			return b, nil
		}
	case kindString:
		var s string
		if err = json.Unmarshal(raw, &s); err == nil {
			return s, nil
		}
		if raw[0] != '"' {
			// A number among string labels keeps its JSON spelling.
			return string(raw), nil
		}
	}
	return nil, fmt.Errorf("element %s: %w", raw, err)
}
