package score

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// A chunk file holds the results of ChunkRows consecutive input records,
// in order: for each record either its outputs or its error, then a
// trailer of two uint64 (results, errors). Records are
//
//	0, uvarint len(id), id, per output: uvarint rank, uvarint dims…, uvarint len(data), data
//	1, uvarint index, uvarint line, uvarint len(reason), reason
const (
	recordResult = 0
	recordError  = 1
	trailerSize  = 16
)

// chunkName is the file of chunk n once complete.
func chunkName(dir string, n int64) string {
	return filepath.Join(dir, fmt.Sprintf("chunk-%08d.bin", n))
}

// chunkWriter writes one chunk through a temporary file.
type chunkWriter struct {
	dir     string
	n       int64
	f       *os.File
	w       *bufio.Writer
	results uint64
	errs    uint64
	buf     []byte
}

// newChunkWriter starts chunk n in dir, writing through w (reset to the
// new file) when not nil, so one buffer serves every chunk of a job.
func newChunkWriter(dir string, n int64, w *bufio.Writer) (*chunkWriter, error) {
	f, err := os.Create(chunkName(dir, n) + ".tmp")
	if err != nil {
		return nil, err
	}
	if w == nil {
		w = bufio.NewWriterSize(f, 1<<20)
	}
	w.Reset(f)
	return &chunkWriter{dir: dir, n: n, f: f, w: w}, nil
}

func (c *chunkWriter) result(id string, outs []tensor.Tensor) error {
	b := append(c.buf[:0], recordResult)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	for _, t := range outs {
		b = binary.AppendUvarint(b, uint64(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.AppendUvarint(b, uint64(d))
		}
		b = binary.AppendUvarint(b, uint64(len(t.Data)))
		b = append(b, t.Data...)
	}
	c.buf = b
	c.results++
	_, err := c.w.Write(b)
	return err
}

func (c *chunkWriter) failure(index, line int64, reason string) error {
	b := append(c.buf[:0], recordError)
	b = binary.AppendUvarint(b, uint64(index))
	b = binary.AppendUvarint(b, uint64(line))
	b = binary.AppendUvarint(b, uint64(len(reason)))
	b = append(b, reason...)
	c.buf = b
	c.errs++
	_, err := c.w.Write(b)
	return err
}

// commit makes the chunk durable under its final name: trailer, flush,
// fsync, rename, fsync of the folder.
func (c *chunkWriter) commit() error {
	var tr [trailerSize]byte
	binary.LittleEndian.PutUint64(tr[:8], c.results)
	binary.LittleEndian.PutUint64(tr[8:], c.errs)
	if _, err := c.w.Write(tr[:]); err != nil {
		c.f.Close()
		return err
	}
	if err := c.w.Flush(); err != nil {
		c.f.Close()
		return err
	}
	if err := c.f.Sync(); err != nil {
		c.f.Close()
		return err
	}
	if err := c.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(c.f.Name(), chunkName(c.dir, c.n)); err != nil {
		return err
	}
	return syncDir(c.dir)
}

func (c *chunkWriter) abort() {
	c.f.Close()
	os.Remove(c.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// chunkCounts reads a complete chunk's trailer.
func chunkCounts(path string) (results, errs uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var tr [trailerSize]byte
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if st.Size() < trailerSize {
		return 0, 0, fmt.Errorf("%s: truncated chunk", path)
	}
	if _, err := f.ReadAt(tr[:], st.Size()-trailerSize); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint64(tr[:8]), binary.LittleEndian.Uint64(tr[8:]), nil
}

// chunkRecord is one decoded record of a chunk.
type chunkRecord struct {
	err    bool
	id     string
	outs   []tensor.Tensor
	index  int64
	line   int64
	reason string
}

// chunkReader decodes a chunk's records in order.
type chunkReader struct {
	r       *bufio.Reader
	f       *os.File
	left    uint64
	outputs []tensor.Spec
	id      []byte // scratch for ids and reasons
}

// openChunk opens a complete chunk for reading through r (reset to the
// file) when not nil, so one buffer serves every chunk.
func openChunk(path string, outputs []tensor.Spec, r *bufio.Reader) (*chunkReader, error) {
	res, errs, err := chunkCounts(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = bufio.NewReaderSize(f, 1<<20)
	}
	r.Reset(f)
	return &chunkReader{r: r, f: f, left: res + errs, outputs: outputs}, nil
}

func (c *chunkReader) close() error { return c.f.Close() }

var errCorruptChunk = errors.New("corrupt chunk file")

// maxChunkRank and maxChunkField bound what a record may claim, so a
// corrupt length fails as corrupt rather than as an allocation.
const (
	maxChunkRank  = 64
	maxChunkField = 1 << 31
)

// next decodes the next record into rec, reusing rec's buffers: rec.outs
// and its data are valid until the next call.
func (c *chunkReader) next(rec *chunkRecord) error {
	if c.left == 0 {
		return io.EOF
	}
	c.left--
	kind, err := c.r.ReadByte()
	if err != nil {
		return errCorruptChunk
	}
	uv := func() uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = binary.ReadUvarint(c.r)
		return v
	}
	// bytesInto reads n bytes into buf's memory, growing it when short.
	bytesInto := func(buf []byte, n uint64) []byte {
		if err == nil && n > maxChunkField {
			err = errCorruptChunk
		}
		if err != nil {
			return buf[:0]
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		_, err = io.ReadFull(c.r, buf)
		return buf
	}
	switch kind {
	case recordResult:
		rec.err = false
		c.id = bytesInto(c.id, uv())
		rec.id = string(c.id)
		if len(rec.outs) != len(c.outputs) {
			rec.outs = make([]tensor.Tensor, len(c.outputs))
		}
		for i, spec := range c.outputs {
			t := &rec.outs[i]
			t.Name, t.DataType = spec.Name, spec.DataType
			rank := uv()
			if rank > maxChunkRank {
				return errCorruptChunk
			}
			t.Shape = t.Shape[:0]
			for range rank {
				t.Shape = append(t.Shape, int64(uv()))
			}
			t.Data = bytesInto(t.Data, uv())
		}
	case recordError:
		rec.err = true
		rec.index = int64(uv())
		rec.line = int64(uv())
		c.id = bytesInto(c.id, uv())
		rec.reason = string(c.id)
	default:
		return errCorruptChunk
	}
	if err != nil {
		return errCorruptChunk
	}
	return nil
}
