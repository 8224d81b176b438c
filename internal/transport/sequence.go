package transport

import (
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// The request parameters of a sequence (sequence_batching), as Triton's
// clients send them: sequence_id an integer or a string, sequence_start
// and sequence_end booleans.
const (
	SequenceIDParameter    = "sequence_id"
	SequenceStartParameter = "sequence_start"
	SequenceEndParameter   = "sequence_end"
)

// MaxSequenceIDLength bounds a string sequence_id, which the server keeps
// for as long as the sequence is active.
const MaxSequenceIDLength = 256

// SequenceIntID returns the key of an integer sequence_id: its decimal text,
// so 7 and "7" name one sequence. 0 is Triton's "no sequence" and refused.
func SequenceIntID(v int64) (string, error) {
	if v == 0 {
		return "", tensor.Invalidf("parameter %q: 0 is not a sequence id", SequenceIDParameter)
	}
	return strconv.FormatInt(v, 10), nil
}

// SequenceUintID is SequenceIntID for an unsigned value.
func SequenceUintID(v uint64) (string, error) {
	if v == 0 {
		return "", tensor.Invalidf("parameter %q: 0 is not a sequence id", SequenceIDParameter)
	}
	return strconv.FormatUint(v, 10), nil
}

// SequenceStringID checks a string sequence_id.
func SequenceStringID(v string) (string, error) {
	if v == "" {
		return "", tensor.Invalidf("parameter %q: the empty string is not a sequence id", SequenceIDParameter)
	}
	if len(v) > MaxSequenceIDLength {
		return "", tensor.Invalidf("parameter %q: %d bytes, at most %d", SequenceIDParameter, len(v), MaxSequenceIDLength)
	}
	return v, nil
}
