package guard

import (
	"encoding/binary"
	"fmt"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
)

// Limits bounds what one inference request may make a front end decode.
// Both decoders check them in the same way and before they allocate for
// the data, so a request that lies about its size costs no memory. A zero
// field takes its default. Limits is a plain value, safe for concurrent use.
type Limits struct {
	// MaxTensorElements bounds the element count of one input tensor
	// [DefaultMaxTensorElements].
	MaxTensorElements int64
	// MaxInputs bounds the inputs of one request [DefaultMaxInputs].
	MaxInputs int
	// MaxBytesElement bounds the length of one BYTES element, in bytes
	// [DefaultMaxBytesElement].
	MaxBytesElement int64
}

// Defaults of Limits. The element bound matches the default 64 MiB message
// size for one-byte types; larger types reach the size limit first.
const (
	DefaultMaxTensorElements = 64 << 20
	DefaultMaxInputs         = 64
	DefaultMaxBytesElement   = 16 << 20
)

// Names of the limits, as their errors and the command's flags spell them,
// so an error tells an operator which setting to raise.
const (
	LimitTensorElements = "max-tensor-elements"
	LimitInputs         = "max-inputs"
	LimitBytesElement   = "max-bytes-element"
	LimitRequestBody    = "max-request-body-size"
)

// WithDefaults returns l with every zero or negative field set to its
// default.
func (l Limits) WithDefaults() Limits {
	if l.MaxTensorElements <= 0 {
		l.MaxTensorElements = DefaultMaxTensorElements
	}
	if l.MaxInputs <= 0 {
		l.MaxInputs = DefaultMaxInputs
	}
	if l.MaxBytesElement <= 0 {
		l.MaxBytesElement = DefaultMaxBytesElement
	}
	return l
}

// limitError is a request over a limit: it maps to 413 /
// RESOURCE_EXHAUSTED and its message names the limit.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return transport.ErrLimit }

// LimitErrorf returns an error wrapping transport.ErrLimit with a formatted message,
// which should name the limit and its value.
func LimitErrorf(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}

// CheckInputs fails when a request carries n inputs, more than MaxInputs.
// A decoder calls it with the count so far, so it stops reading at the
// first input over the limit.
func (l Limits) CheckInputs(n int) error {
	l = l.WithDefaults()
	if n > l.MaxInputs {
		return LimitErrorf("the request has more than %d inputs, the %s limit", l.MaxInputs, LimitInputs)
	}
	return nil
}

// CheckElements fails when input name has n elements, more than
// MaxTensorElements.
func (l Limits) CheckElements(name string, n int64) error {
	l = l.WithDefaults()
	if n > l.MaxTensorElements {
		return LimitErrorf("input %q: %d elements exceed the %s limit of %d", name, n, LimitTensorElements, l.MaxTensorElements)
	}
	return nil
}

// CheckBytesElement fails when element i of BYTES input name is length
// bytes long, more than MaxBytesElement.
func (l Limits) CheckBytesElement(name string, i, length int64) error {
	l = l.WithDefaults()
	if length > l.MaxBytesElement {
		return LimitErrorf("input %q: BYTES element %d is %d bytes long, over the %s limit of %d", name, i, length, LimitBytesElement, l.MaxBytesElement)
	}
	return nil
}

// CheckTensor applies the element and BYTES element limits to a tensor
// whose data is already in the raw layout (gRPC raw contents, the HTTP
// binary extension). It walks the BYTES length prefixes without trusting
// them: a malformed layout is left for tensor.Tensor.Validate to report.
func (l Limits) CheckTensor(t tensor.Tensor) error {
	l = l.WithDefaults()
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return fmt.Errorf("input %q: %w", t.Name, err)
	}
	if err := l.CheckElements(t.Name, n); err != nil {
		return err
	}
	if t.DataType != tensor.Bytes {
		return nil
	}
	data := t.Data
	for i := int64(0); i < n && len(data) >= 4; i++ {
		size := binary.LittleEndian.Uint32(data)
		if err := l.CheckBytesElement(t.Name, i, int64(size)); err != nil {
			return err
		}
		data = data[4:]
		if uint64(size) > uint64(len(data)) {
			return nil
		}
		data = data[size:]
	}
	return nil
}
