package dataset

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// jsonStringCases are strings whose JSON encoding takes each of
// appendJSONString's paths.
var jsonStringCases = []string{"", "plain id-42", `a"b`, `back\slash`, "<tag>&amp;", "tab\tnew\nline", "\x00\x1f", "\x7f",
	"é café", "\u2028\u2029", "bad \xff utf-8", "日本"}

func TestDatasetAppendJSONString(t *testing.T) {
	for _, s := range jsonStringCases {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, json.Marshal gives %s", s, got[1:], want)
		}
	}
}

// FuzzAppendJSONString: the fast path writes what encoding/json writes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, json.Marshal gives %s", s, got, want)
		}
	})
}

// TestDatasetRowEncoder: rows encoded with AppendRow and written with
// WriteEncoded make the same file as Write, for JSON lines and CSV.
func TestDatasetRowEncoder(t *testing.T) {
	nan := math.Float32bits(float32(math.NaN()))
	grid := tensor.Tensor{Name: "grid", DataType: tensor.FP32, Shape: []int64{2, 2}, Data: binary.LittleEndian.AppendUint32(
		binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil,
			math.Float32bits(1)), math.Float32bits(-2.5)), math.Float32bits(3e-8)), nan)}
	label := tensor.Tensor{Name: "label", DataType: tensor.Bytes, Shape: []int64{2},
		Data: tensor.AppendBytesElement(tensor.AppendBytesElement(nil, []byte("cat, \"tabby\"")), []byte("<dog>"))}
	count := tensor.Tensor{Name: "count", DataType: tensor.Int64, Shape: []int64{}, Data: binary.LittleEndian.AppendUint64(nil, math.MaxUint64)}
	opt := WriteOptions{IDColumn: "id", Outputs: []tensor.Spec{
		{Name: "grid", DataType: tensor.FP32, Shape: []int64{2, 2}},
		{Name: "label", DataType: tensor.Bytes, Shape: []int64{-1}},
		{Name: "count", DataType: tensor.Int64, Shape: []int64{}},
	}}
	row := []tensor.Tensor{grid, label, count}
	ids := []string{"1", `quote " & <b>`, "é"}
	wantJSONL := `{"id":"1","grid":[[1,-2.5],[3e-08,null]],"label":["cat, \"tabby\"","\u003cdog\u003e"],"count":-1}` + "\n"
	for _, f := range []Format{JSONL, CSV} {
		t.Run(string(f), func(t *testing.T) {
			var plain, encoded bytes.Buffer
			w, err := NewWriter(&plain, f, opt)
			if err != nil {
				t.Fatal(err)
			}
			w2, err := NewWriter(&encoded, f, opt)
			if err != nil {
				t.Fatal(err)
			}
			enc, ok := w2.(RowEncoder)
			if !ok {
				t.Fatalf("the %s writer is no RowEncoder", f)
			}
			var buf []byte
			for _, id := range ids {
				if err := w.Write(id, row); err != nil {
					t.Fatal(err)
				}
				if buf, err = enc.AppendRow(buf[:0], id, row); err != nil {
					t.Fatal(err)
				}
				if err := enc.WriteEncoded(buf, row); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w2.Close(); err != nil {
				t.Fatal(err)
			}
			if plain.String() != encoded.String() {
				t.Errorf("Write wrote\n%s\nAppendRow and WriteEncoded\n%s", plain.String(), encoded.String())
			}
			if f == JSONL {
				if first, _, _ := bytes.Cut(plain.Bytes(), []byte("\n")); string(first)+"\n" != wantJSONL {
					t.Errorf("first line %s, want %s", first, wantJSONL)
				}
			}
			// A row whose label has another length than the header's.
			short := []tensor.Tensor{grid, {Name: "label", DataType: tensor.Bytes, Shape: []int64{1}, Data: tensor.AppendBytesElement(nil, []byte("x"))}, count}
			buf, err = enc.AppendRow(buf[:0], "x", short)
			if err != nil {
				t.Fatal(err)
			}
			werr := enc.WriteEncoded(buf, short)
			if f == CSV && (werr == nil || !bytes.Contains([]byte(werr.Error()), []byte("the header has 2 columns"))) {
				t.Errorf("CSV row of another width: %v", werr)
			}
			if _, err := enc.AppendRow(nil, "x", row[:2]); err == nil {
				t.Error("AppendRow took a row with an output missing")
			}
		})
	}
}

// TestDatasetParquetRowGroups: a long file is written in row groups of at most
// parquetGroupRows rows, and reads back whole.
func TestDatasetParquetRowGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 120k rows")
	}
	spec := tensor.Spec{Name: "Y", DataType: tensor.FP32, Shape: []int64{}}
	n := parquetGroupRows + 10
	path := filepath.Join(t.TempDir(), "long.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, Parquet, WriteOptions{Outputs: []tensor.Spec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	row := []tensor.Tensor{{Name: "Y", DataType: tensor.FP32, Shape: []int64{}, Data: make([]byte, 4)}}
	for i := range n {
		binary.LittleEndian.PutUint32(row[0].Data, math.Float32bits(float32(i)))
		if err := w.Write("", row); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	pf := openParquetFile(t, path)
	if got := len(pf.RowGroups()); got != 2 {
		t.Errorf("%d row groups, want 2", got)
	}
	rows := readAll(t, path, ReadOptions{Inputs: []tensor.Spec{{Name: "Y", DataType: tensor.FP32, Shape: []int64{1}}}})
	if len(rows) != n {
		t.Fatalf("read %d rows, wrote %d", len(rows), n)
	}
	for i, r := range rows {
		if r.Err != nil || math.Float32frombits(binary.LittleEndian.Uint32(r.Inputs[0].Data)) != float32(i) {
			t.Fatalf("row %d: %v %v", i, r.Inputs, r.Err)
		}
	}
}

// TestDatasetWriterKeepsNoReference: every writer may be handed the same buffer
// again and again (score's replay reuses its buffers); what was written
// stays written.
func TestDatasetWriterKeepsNoReference(t *testing.T) {
	spec := tensor.Spec{Name: "S", DataType: tensor.Bytes, Shape: []int64{2}}
	for _, ext := range []string{"jsonl", "csv", "parquet"} {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s."+ext)
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			format, _ := FormatOf(path)
			w, err := NewWriter(f, format, WriteOptions{Outputs: []tensor.Spec{spec}})
			if err != nil {
				t.Fatal(err)
			}
			row := []tensor.Tensor{{Name: "S", DataType: tensor.Bytes, Shape: []int64{2}}}
			for i := range 5 {
				row[0].Data = tensor.AppendBytesElement(tensor.AppendBytesElement(row[0].Data[:0], []byte{'a' + byte(i)}), []byte{'v' + byte(i)})
				if err := w.Write("", row); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got := readAll(t, path, ReadOptions{Inputs: []tensor.Spec{spec}})
			for i, r := range got {
				want := tensor.AppendBytesElement(tensor.AppendBytesElement(nil, []byte{'a' + byte(i)}), []byte{'v' + byte(i)})
				if r.Err != nil || !bytes.Equal(r.Inputs[0].Data, want) {
					t.Errorf("row %d: %v, %v; want %q", i, r.Inputs, r.Err, want)
				}
			}
		})
	}
}

func openParquetFile(t *testing.T, path string) *parquet.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return pf
}
