package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// npyMapped reads an NPY file mapped into memory: its rows are handed out
// as views (Viewer) without a copy, or copied from the mapping without a
// system call each.
type npyMapped struct {
	npyReader
	data []byte // the whole file, mapped read-only
	off  int64  // where row 0 starts in data
	// populated is how far the mapping's page tables are filled ahead of
	// the rows read (populate).
	populated int64
}

// npyPopulate is how much of the mapping populate fills at once.
const npyPopulate = 4 << 20

// mapNPY maps r's file, whose rows start at off, or returns nil when it
// cannot (not a regular file, an empty one, a system without mmap); the
// caller then reads it with r.
func mapNPY(r *npyReader, off int64) *npyMapped {
	st, err := r.f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 || st.Size() != int64(int(st.Size())) {
		return nil
	}
	data, err := unix.Mmap(int(r.f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Rows are read front to back: read ahead, and drop pages behind.
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
	return &npyMapped{npyReader: *r, data: data, off: off, populated: off}
}

func (r *npyMapped) Close() error {
	return errors.Join(unix.Munmap(r.data), r.f.Close())
}

func (r *npyMapped) Skip(n int64) error {
	if r.index+n > r.rows {
		return io.ErrUnexpectedEOF
	}
	r.index += n
	return nil
}

func (r *npyMapped) Next() (Row, error) { return nextOwned(r, 1) }

func (r *npyMapped) NextAppend(bufs [][]byte) (Row, error) {
	row, err := r.NextView()
	if err != nil {
		return row, err
	}
	start := len(bufs[0])
	bufs[0] = append(bufs[0], r.in[0].Data...)
	r.in[0].Data = bufs[0][start:]
	return row, nil
}

func (r *npyMapped) NextView() (Row, error) {
	if r.index >= r.rows {
		return Row{}, io.EOF
	}
	start := r.off + r.index*r.rowLen
	end := start + r.rowLen
	if end > int64(len(r.data)) {
		return Row{}, fmt.Errorf("%w: NPY data ends at row %d of %d", ErrFormat, r.index, r.rows)
	}
	r.populate(end)
	r.in[0] = tensor.Tensor{Name: r.spec.Name, DataType: r.spec.DataType, Shape: r.shape, Data: r.data[start:end]}
	row := Row{Index: r.index, Inputs: r.in[:]}
	r.index++
	return row, nil
}

// populate fills the mapping's page tables up to end and npyPopulate
// beyond, in one system call (MADV_POPULATE_READ, Linux 5.14) rather than
// a page fault every few pages as the run reads the rows: a fault is dear
// on a virtual machine. Where the kernel lacks it, the faults happen as
// before.
func (r *npyMapped) populate(end int64) {
	if end <= r.populated {
		return
	}
	from := r.populated &^ int64(os.Getpagesize()-1)
	to := min(end+npyPopulate, int64(len(r.data)))
	_ = unix.Madvise(r.data[from:to], unix.MADV_POPULATE_READ)
	r.populated = to
}
