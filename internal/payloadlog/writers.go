package payloadlog

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
)

// rowWriter writes export rows: vals holds one value per column, in column
// order (time.Time, string, int64, float64, bool, or nil for none).
type rowWriter interface {
	write(vals []any) error
	close() error
}

// newRowWriter returns the writer of format for cols (after fixedColumns).
func newRowWriter(format string, out io.Writer, cols []column) (rowWriter, error) {
	all := append(append([]column(nil), fixedColumns...), cols...)
	switch format {
	case FormatJSONL:
		return &jsonlWriter{w: bufio.NewWriterSize(out, 1<<16), cols: all}, nil
	case FormatCSV:
		w := &csvWriter{w: csv.NewWriter(out), cols: all, rec: make([]string, len(all))}
		for i, c := range all {
			w.rec[i] = c.name
		}
		if err := w.w.Write(w.rec); err != nil {
			return nil, err
		}
		return w, nil
	case FormatParquet:
		return newParquetWriter(out, all), nil
	}
	return nil, fmt.Errorf("format %q", format)
}

// jsonlWriter writes one JSON object per row, keys in column order.
type jsonlWriter struct {
	w    *bufio.Writer
	cols []column
	buf  []byte
}

func (j *jsonlWriter) write(vals []any) error {
	b := append(j.buf[:0], '{')
	for i, c := range j.cols {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(c.name)
		b = append(b, k...)
		b = append(b, ':')
		switch v := vals[i].(type) {
		case time.Time:
			b = append(b, '"')
			b = v.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		case float64:
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		default:
			e, err := json.Marshal(v)
			if err != nil {
				return err
			}
			b = append(b, e...)
		}
	}
	b = append(b, '}', '\n')
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

func (j *jsonlWriter) close() error { return j.w.Flush() }

// csvWriter writes a header, then one record per row; none is "".
type csvWriter struct {
	w    *csv.Writer
	cols []column
	rec  []string
}

func (c *csvWriter) write(vals []any) error {
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			c.rec[i] = ""
		case time.Time:
			c.rec[i] = v.UTC().Format(time.RFC3339Nano)
		case string:
			c.rec[i] = v
		case int64:
			c.rec[i] = strconv.FormatInt(v, 10)
		case float64:
			c.rec[i] = strconv.FormatFloat(v, 'g', -1, 64)
		case bool:
			c.rec[i] = strconv.FormatBool(v)
		}
	}
	return c.w.Write(c.rec)
}

func (c *csvWriter) close() error {
	c.w.Flush()
	return c.w.Error()
}

// parquetRowGroup bounds the rows a Parquet writer buffers before it
// writes a row group, so memory stays flat on a long export.
const parquetRowGroup = 64 << 10

// parquetWriter writes rows through parquet-go with a schema built from
// the columns: time as a nanosecond timestamp, the fixed columns required,
// feature columns optional (null where a value is missing or was NaN).
// Parquet orders a group's columns by name; index maps ours to its.
type parquetWriter struct {
	w     *parquet.Writer
	cols  []column
	index []int
	batch []parquet.Row
}

func newParquetWriter(out io.Writer, cols []column) *parquetWriter {
	g := parquet.Group{}
	for i, c := range cols {
		var n parquet.Node
		switch c.kind {
		case kindTime:
			n = parquet.Timestamp(parquet.Nanosecond)
		case kindString:
			n = parquet.String()
		case kindInt:
			n = parquet.Int(64)
		case kindFloat:
			n = parquet.Leaf(parquet.DoubleType)
		case kindBool:
			n = parquet.Leaf(parquet.BooleanType)
		}
		if i >= len(fixedColumns) {
			n = parquet.Optional(n)
		}
		g[c.name] = n
	}
	schema := parquet.NewSchema("payload_log", g)
	pos := map[string]int{}
	for i, path := range schema.Columns() {
		pos[path[0]] = i
	}
	p := &parquetWriter{w: parquet.NewWriter(out, schema, parquet.MaxRowsPerRowGroup(parquetRowGroup)), cols: cols,
		index: make([]int, len(cols))}
	for i, c := range cols {
		p.index[i] = pos[c.name]
	}
	return p
}

func (p *parquetWriter) write(vals []any) error {
	row := make(parquet.Row, len(vals))
	for i, v := range vals {
		col := p.index[i]
		def := 0
		if i >= len(fixedColumns) {
			def = 1
		}
		var pv parquet.Value
		switch v := v.(type) {
		case nil:
			row[col] = parquet.Value{}.Level(0, 0, col)
			continue
		case time.Time:
			pv = parquet.Int64Value(v.UnixNano())
		case string:
			pv = parquet.ByteArrayValue([]byte(v))
		case int64:
			pv = parquet.Int64Value(v)
		case float64:
			if math.IsNaN(v) {
				row[col] = parquet.Value{}.Level(0, 0, col)
				continue
			}
			pv = parquet.DoubleValue(v)
		case bool:
			pv = parquet.BooleanValue(v)
		}
		row[col] = pv.Level(0, def, col)
	}
	p.batch = append(p.batch, row)
	if len(p.batch) < 1024 {
		return nil
	}
	return p.flushBatch()
}

func (p *parquetWriter) flushBatch() error {
	_, err := p.w.WriteRows(p.batch)
	p.batch = p.batch[:0]
	return err
}

func (p *parquetWriter) close() error {
	if err := p.flushBatch(); err != nil {
		return err
	}
	return p.w.Close()
}
