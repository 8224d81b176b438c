package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = guard.Limits{MaxTensorElements: 1 << 10, MaxInputs: 16, MaxBytesElement: 16}

// clientError reports whether err is one a client caused: a malformed
// request or one over a limit.
func clientError(err error) bool {
	return errors.Is(err, tensor.ErrInvalid) || errors.Is(err, transport.ErrLimit)
}

// checkAccepted asserts what every accepted request must satisfy: valid
// tensors within fuzzLimits that survive a JSON round trip unchanged.
func checkAccepted(t *testing.T, req inferRequest) {
	t.Helper()
	if err := fuzzLimits.CheckInputs(len(req.Inputs)); err != nil {
		t.Fatalf("accepted a request over a limit: %v", err)
	}
	for _, in := range req.Inputs {
		if err := in.Validate(); err != nil {
			t.Fatalf("accepted an invalid tensor: %v", err)
		}
		if err := fuzzLimits.CheckTensor(in); err != nil {
			t.Fatalf("accepted a tensor over a limit: %v", err)
		}
	}
	// Encoding the tensors back to JSON and decoding again must give the
	// same bytes: the JSON and binary paths agree on every datatype. JSON
	// has no NaN or infinity, so tensors holding them are left out.
	var finite []tensor.Tensor
	for _, in := range req.Inputs {
		if allFinite(in) {
			finite = append(finite, in)
		}
	}
	if len(finite) == 0 {
		return
	}
	req.Inputs = finite
	doc := []byte(`{"inputs":[`)
	for i, in := range req.Inputs {
		if i > 0 {
			doc = append(doc, ',')
		}
		doc = append(doc, `{"name":`...)
		doc = appendString(doc, in.Name)
		doc = append(doc, `,"datatype":"`+in.DataType.String()+`","shape":`...)
		doc = appendShape(doc, in.Shape)
		doc = append(doc, `,"data":`...)
		doc = appendData(doc, in)
		doc = append(doc, '}')
	}
	doc = append(doc, "]}"...)
	again, err := decodeInferRequest(doc, -1, "", guard.Limits{})
	if err != nil {
		t.Fatalf("re-encoded request %s rejected: %v", doc, err)
	}
	for i := range req.Inputs {
		a, b := req.Inputs[i], again.Inputs[i]
		// Invalid UTF-8 in a name or a BYTES element is sent as U+FFFD, so
		// only valid text must come back byte for byte.
		if utf8.ValidString(a.Name) && a.Name != b.Name {
			t.Fatalf("round trip changed input %d's name %q to %q", i, a.Name, b.Name)
		}
		if (a.DataType != tensor.Bytes || utf8.Valid(a.Data)) && !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("round trip changed input %q: %x became %x", a.Name, a.Data, b.Data)
		}
	}
}

// allFinite reports whether a float tensor holds no NaN or infinity.
func allFinite(t tensor.Tensor) bool {
	d := t.Data
	switch t.DataType {
	case tensor.FP16, tensor.BF16:
		for i := 0; i+2 <= len(d); i += 2 {
			h := binary.LittleEndian.Uint16(d[i:])
			if t.DataType == tensor.FP16 && h&0x7c00 == 0x7c00 || t.DataType == tensor.BF16 && h&0x7f80 == 0x7f80 {
				return false
			}
		}
	case tensor.FP32:
		for i := 0; i+4 <= len(d); i += 4 {
			if f := math.Float32frombits(binary.LittleEndian.Uint32(d[i:])); math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return false
			}
		}
	case tensor.FP64:
		for i := 0; i+8 <= len(d); i += 8 {
			if f := math.Float64frombits(binary.LittleEndian.Uint64(d[i:])); math.IsNaN(f) || math.IsInf(f, 0) {
				return false
			}
		}
	}
	return true
}

func FuzzDecodeInferRequest(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeInferRequest(body, -1, "", fuzzLimits)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("error %v does not map to a client error", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted malformed JSON %q", body)
		}
		checkAccepted(t, req)
	})
}

func FuzzDecodeBinary(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[2],"datatype":"INT16","parameters":{"binary_data_size":4}}]}`), []byte{1, 0, 2, 0})
	f.Fuzz(func(t *testing.T, header, bin []byte) {
		body := append(append([]byte(nil), header...), bin...)
		req, err := decodeInferRequest(body, len(header), "", fuzzLimits)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("error %v does not map to a client error", err)
			}
			return
		}
		if !json.Valid(header) {
			t.Fatalf("accepted malformed JSON header %q", header)
		}
		before := make([][]byte, len(req.Inputs))
		for i, in := range req.Inputs {
			before[i] = bytes.Clone(in.Data)
		}
		for i := range body {
			body[i] ^= 0xff
		}
		for i, in := range req.Inputs {
			if !bytes.Equal(in.Data, before[i]) {
				t.Fatalf("input %q aliases the request body", in.Name)
			}
		}
		checkAccepted(t, req)
	})
}

// TestFuzzSeeds checks that the committed seed corpus says what its file
// names claim: "bad_" seeds are rejected, "bad_limit_" ones for exceeding
// a limit of fuzzLimits, and the others accepted.
func TestFuzzSeeds(t *testing.T) {
	for _, target := range []string{"FuzzDecodeInferRequest", "FuzzDecodeBinary"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no seed corpus (%v)", target, err)
		}
		for _, file := range files {
			t.Run(target+"/"+filepath.Base(file), func(t *testing.T) {
				args := readSeed(t, file)
				var err error
				if len(args) == 1 {
					_, err = decodeInferRequest(args[0], -1, "", fuzzLimits)
				} else {
					_, err = decodeInferRequest(append(args[0], args[1]...), len(args[0]), "", fuzzLimits)
				}
				bad := strings.HasPrefix(filepath.Base(file), "bad_")
				if bad && err == nil {
					t.Fatal("a bad_ seed was accepted")
				}
				if limit := strings.HasPrefix(filepath.Base(file), "bad_limit_"); limit != errors.Is(err, transport.ErrLimit) {
					t.Fatalf("error %v; a limit error expected: %v", err, limit)
				}
				if !bad && err != nil {
					t.Fatalf("a valid seed was rejected: %v", err)
				}
			})
		}
	}
}

// readSeed parses a corpus file of []byte arguments.
func readSeed(t *testing.T, file string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a fuzz corpus file", file)
	}
	var args [][]byte
	for _, l := range lines[1:] {
		q, ok := strings.CutPrefix(l, "[]byte(")
		if !ok || !strings.HasSuffix(q, ")") {
			t.Fatalf("%s: unexpected line %q", file, l)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		args = append(args, []byte(s))
	}
	return args
}
