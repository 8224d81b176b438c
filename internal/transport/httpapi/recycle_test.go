package httpapi

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// largeBinaryBody is a binary-extension request with one FP32 input of n
// elements, every byte fill.
func largeBinaryBody(n int, fill byte) ([]byte, int) {
	header := `{"inputs":[{"name":"x","shape":[` + strconv.Itoa(n) + `],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(4*n) + `}}]}`
	return binaryBody(header, bytes.Repeat([]byte{fill}, 4*n))
}

// TestBinaryRecycled decodes large binary requests one after another,
// releasing each as answered: a later request's data lands in an earlier
// one's buffer, and each request still reads its own bytes.
func TestBinaryRecycled(t *testing.T) {
	const n = 4096
	var reused bool
	var prev *byte
	for i := range 50 {
		body, hl := largeBinaryBody(n, byte(i))
		req, err := decodeInferRequest(body, hl, "", guard.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if req.binBuf == nil {
			t.Fatalf("a %d-byte binary section is not in a recycled buffer", 4*n)
		}
		data := req.Inputs[0].Data
		if !bytes.Equal(data, bytes.Repeat([]byte{byte(i)}, 4*n)) {
			t.Fatalf("request %d reads bytes that are not its own", i)
		}
		body[len(body)-1] ^= 0xff
		if data[len(data)-1] != byte(i) {
			t.Fatal("the input aliases the request body")
		}
		reused = reused || &data[0] == prev
		prev = &data[0]
		req.release(true)
		if req.Inputs[0].Data != nil || req.binBuf != nil {
			t.Fatal("release left the inputs' data in place")
		}
	}
	if !reused {
		t.Error("no request's binary data reused an earlier request's buffer")
	}
}

// TestBinaryNotRecycledWithoutReuse releases a request that was not
// answered by the serving core (it may still be read by a batch): its
// buffer must not be handed to the next request.
func TestBinaryNotRecycledWithoutReuse(t *testing.T) {
	body, hl := largeBinaryBody(4096, 1)
	req, err := decodeInferRequest(body, hl, "", guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	kept := req.Inputs[0].Data
	req.release(false)
	for i := range 20 {
		body, hl := largeBinaryBody(4096, 2)
		next, err := decodeInferRequest(body, hl, "", guard.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if &next.Inputs[0].Data[0] == &kept[0] {
			t.Fatalf("round %d: an abandoned request's buffer was handed out again", i)
		}
		next.release(true)
	}
	if kept[0] != 1 {
		t.Error("an abandoned request's data changed")
	}
}

// TestSmallBinaryNotPooled: a small binary section is a plain allocation.
func TestSmallBinaryNotPooled(t *testing.T) {
	body, hl := largeBinaryBody(16, 3)
	req, err := decodeInferRequest(body, hl, "", guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.binBuf != nil {
		t.Error("a 64-byte section took a recycled buffer")
	}
	runtime.KeepAlive(req)
}
