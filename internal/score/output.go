package score

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// sink writes a job's output file and its errors file, in input order,
// each beside its final name until commit renames it into place. The
// errors file is created at the first bad row. Not safe for concurrent
// use: the job's writer goroutine owns it.
type sink struct {
	path       string // the output file
	of, ef     *os.File
	w          dataset.Writer
	ew         *bufio.Writer
	rows, errs int64
	outputs    []tensor.Spec
	rec        chunkRecord   // replay's scratch
	br         *bufio.Reader // replay's read buffer, one for every chunk
}

// openSink creates the temporary output file and its writer; rows is the
// number of output rows, which only NPY needs up front.
func openSink(path string, f dataset.Format, outputs []tensor.Spec, idColumn string, rows int64) (*sink, error) {
	of, err := os.Create(path + ".tmp")
	if err != nil {
		return nil, err
	}
	w, err := dataset.NewWriter(of, f, dataset.WriteOptions{Outputs: outputs, IDColumn: idColumn, Rows: rows})
	if err != nil {
		of.Close()
		os.Remove(of.Name())
		return nil, err
	}
	return &sink{path: path, of: of, w: w, outputs: outputs}, nil
}

// result writes one good row.
func (s *sink) result(id string, outs []tensor.Tensor) error {
	if err := s.w.Write(id, outs); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	s.rows++
	return nil
}

// resultEncoded writes one good row that the sink's writer, a
// dataset.RowEncoder, encoded as enc, or failed to encode with encErr.
func (s *sink) resultEncoded(enc []byte, encErr error, outs []tensor.Tensor) error {
	err := encErr
	if err == nil {
		err = s.w.(dataset.RowEncoder).WriteEncoded(enc, outs)
	}
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	s.rows++
	return nil
}

// failure writes one bad row to the errors file.
func (s *sink) failure(index, line int64, reason string) error {
	if s.ef == nil {
		ef, err := os.Create(ErrorsPath(s.path) + ".tmp")
		if err != nil {
			return err
		}
		s.ef, s.ew = ef, bufio.NewWriterSize(ef, 1<<16)
	}
	b, err := json.Marshal(struct {
		Record int64  `json:"record"`
		Line   int64  `json:"line,omitempty"`
		Error  string `json:"error"`
	}{index + 1, line, reason})
	if err != nil {
		return err
	}
	s.errs++
	_, err = s.ew.Write(append(b, '\n'))
	return err
}

// replay writes the records of the complete chunks [from, to) in dir.
func (s *sink) replay(dir string, from, to int64) error {
	for n := from; n < to; n++ {
		p := chunkName(dir, n)
		if s.br == nil {
			s.br = bufio.NewReaderSize(nil, 1<<20)
		}
		cr, err := openChunk(p, s.outputs, s.br)
		if err != nil {
			return err
		}
		for err == nil {
			if err = cr.next(&s.rec); err == nil {
				if s.rec.err {
					err = s.failure(s.rec.index, s.rec.line, s.rec.reason)
				} else {
					err = s.result(s.rec.id, s.rec.outs)
				}
			}
		}
		cr.close()
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// commit finishes both files, makes them durable and renames them into
// place (removing the errors file of an earlier run when this one had no
// bad rows).
func (s *sink) commit() error {
	if err := s.w.Close(); err != nil {
		return err
	}
	if err := s.of.Sync(); err != nil {
		return err
	}
	if err := s.of.Close(); err != nil {
		return err
	}
	if s.ef != nil {
		if err := s.ew.Flush(); err != nil {
			return err
		}
		if err := s.ef.Sync(); err != nil {
			return err
		}
		if err := s.ef.Close(); err != nil {
			return err
		}
		if err := os.Rename(s.ef.Name(), ErrorsPath(s.path)); err != nil {
			return err
		}
	} else if err := os.Remove(ErrorsPath(s.path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(s.of.Name(), s.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

// abort closes and removes the temporary files of a sink not committed.
func (s *sink) abort() {
	s.of.Close()
	os.Remove(s.of.Name())
	if s.ef != nil {
		s.ef.Close()
		os.Remove(s.ef.Name())
	}
}

// countResults sums the result records of the complete chunks [0, n) in
// dir, from their trailers.
func countResults(dir string, n int64) (int64, error) {
	var rows int64
	for c := range n {
		r, _, err := chunkCounts(chunkName(dir, c))
		if err != nil {
			return 0, err
		}
		rows += int64(r)
	}
	return rows, nil
}

// countRecords sums the records, good and bad, of the complete chunks
// [0, n) in dir, from their trailers.
func countRecords(dir string, n int64) (int64, error) {
	var records int64
	for c := range n {
		r, e, err := chunkCounts(chunkName(dir, c))
		if err != nil {
			return 0, err
		}
		records += int64(r + e)
	}
	return records, nil
}
