package grpcapi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// inferRequest builds a request with every kind of field: parameters,
// typed contents, requested outputs and raw contents of the given sizes.
func inferRequest(rng *rand.Rand, rawSizes ...int) *inference.ModelInferRequest {
	req := &inference.ModelInferRequest{
		ModelName:    "ocr_cls",
		ModelVersion: "2",
		Id:           "req-7",
		Parameters: map[string]*inference.InferParameter{
			"sequence_id": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 42}},
			"priority":    {ParameterChoice: &inference.InferParameter_StringParam{StringParam: "high"}},
		},
		Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUT"}},
	}
	for i, n := range rawSizes {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.IntN(256))
		}
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{
			Name: "IN" + strconv.Itoa(i), Datatype: "UINT8", Shape: []int64{1, int64(n)},
		})
		req.RawInputContents = append(req.RawInputContents, data)
	}
	return req
}

// shuffleFields re-orders b's top-level fields at random, keeping the
// order among fields of one number (which protobuf preserves for repeated
// fields). Any such order is valid wire data for the same message.
func shuffleFields(t *testing.T, rng *rand.Rand, b []byte) []byte {
	t.Helper()
	groups := map[protowire.Number][][]byte{}
	var nums []protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if n < 0 || m < 0 {
			t.Fatalf("bad wire data")
		}
		if _, ok := groups[num]; !ok {
			nums = append(nums, num)
		}
		groups[num] = append(groups[num], b[:n+m])
		b = b[n+m:]
	}
	var out []byte
	for len(nums) > 0 {
		i := rng.IntN(len(nums))
		g := groups[nums[i]]
		out = append(out, g[0]...)
		if groups[nums[i]] = g[1:]; len(g) == 1 {
			nums = append(nums[:i], nums[i+1:]...)
		}
	}
	return out
}

func wire(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecUnmarshalMatchesProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw7AsVarint := protowire.AppendVarint(protowire.AppendTag(nil, fieldRawInputContents, protowire.VarintType), 5)
	unknown := protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "later field")
	cases := map[string][]byte{
		"empty":             nil,
		"no raw contents":   wire(t, inferRequest(rng)),
		"one raw input":     wire(t, inferRequest(rng, 110_592)),
		"three raw inputs":  wire(t, inferRequest(rng, 64, 0, 5000)),
		"field after raw":   append(wire(t, inferRequest(rng, 64, 64)), wire(t, &inference.ModelInferRequest{Id: "late"})...),
		"unknown after raw": append(wire(t, inferRequest(rng, 16)), unknown...),
		"raw as a varint":   append(wire(t, inferRequest(rng, 16)), raw7AsVarint...),
		"typed contents": wire(t, &inference.ModelInferRequest{ModelName: "m", Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{2},
			Contents: &inference.InferTensorContents{Fp32Contents: []float32{1.5, -2}},
		}}}),
	}
	for i := range 50 {
		cases["shuffled "+strconv.Itoa(i)] = shuffleFields(t, rng, wire(t, inferRequest(rng, rng.IntN(3000), rng.IntN(20), 1)))
	}
	c := newCodec()
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			want := &inference.ModelInferRequest{}
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatal(err)
			}
			// The aliasing decoder itself, whatever the size, and the codec,
			// which uses it from aliasFrom bytes on.
			got := &inference.ModelInferRequest{}
			if err := unmarshalInfer(bytes.Clone(b), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("aliasing decoder decoded\n%v\nprotobuf decoded\n%v", got, want)
			}
			// Growing one tensor must not run into the bytes after it.
			for i, r := range got.RawInputContents {
				if len(r) != cap(r) {
					t.Fatalf("raw input %d: len %d, cap %d", i, len(r), cap(r))
				}
			}
			got = &inference.ModelInferRequest{}
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bytes.Clone(b))}, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("codec decoded\n%v\nprotobuf decoded\n%v", got, want)
			}
		})
	}
}

func TestCodecUnmarshalMalformed(t *testing.T) {
	good := wire(t, inferRequest(rand.New(rand.NewPCG(3, 4)), 2*aliasFrom))
	c := newCodec()
	for name, b := range map[string][]byte{
		"truncated payload": good[:len(good)-1],
		"truncated tag":     append(bytes.Clone(good), 0x80),
		"field number zero": append(bytes.Clone(good), 0x02, 0x00),
	} {
		t.Run(name, func(t *testing.T) {
			err := c.unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &inference.ModelInferRequest{})
			if err == nil {
				t.Fatal("malformed message decoded")
			}
			if stdErr := proto.Unmarshal(b, &inference.ModelInferRequest{}); stdErr == nil || stdErr.Error() != err.Error() {
				t.Fatalf("error %q, protobuf's own is %v", err, stdErr)
			}
			// Unmarshal leaves the error to the interceptors, once.
			req := &inference.ModelInferRequest{}
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bytes.Clone(b))}, req); err != nil {
				t.Fatalf("Unmarshal = %v, want the error recorded instead", err)
			}
			if st, _ := status.FromError(c.decodeError(req)); st.Code() != codes.InvalidArgument {
				t.Fatalf("decodeError = %v, want InvalidArgument", st)
			}
			if err := c.decodeError(req); err != nil {
				t.Fatalf("decodeError a second time = %v, want nil", err)
			}
		})
	}
}

// shares reports whether some buffer of s is data itself rather than a
// copy of it.
func shares(s mem.BufferSlice, data []byte) bool {
	for _, b := range s {
		if d := b.ReadOnlyData(); len(d) == len(data) && unsafe.SliceData(d) == unsafe.SliceData(data) {
			return true
		}
	}
	return false
}

func TestCodecMarshal(t *testing.T) {
	large := bytes.Repeat([]byte{7}, 3*separateOutput)
	resp := func() *inference.ModelInferResponse {
		return &inference.ModelInferResponse{
			ModelName: "ocr_cls", ModelVersion: "1", Id: "r",
			Parameters: map[string]*inference.InferParameter{"p": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}}},
			Outputs: []*inference.ModelInferResponse_InferOutputTensor{
				{Name: "small", Datatype: "UINT8", Shape: []int64{3}},
				{Name: "large", Datatype: "UINT8", Shape: []int64{int64(len(large))}},
				{Name: "tail", Datatype: "UINT8", Shape: []int64{2}},
			},
			RawOutputContents: [][]byte{{1, 2, 3}, large, {4, 5}},
		}
	}
	cases := []struct {
		name      string
		msg       proto.Message
		zeroCopy  bool
		wantEmpty proto.Message
	}{
		{"infer response", resp(), true, &inference.ModelInferResponse{}},
		{"stream response", &inference.ModelStreamInferResponse{InferResponse: resp()}, true, &inference.ModelStreamInferResponse{}},
		{"stream error and response", &inference.ModelStreamInferResponse{ErrorMessage: "partial", InferResponse: resp()}, true, &inference.ModelStreamInferResponse{}},
		{"stream error only", &inference.ModelStreamInferResponse{ErrorMessage: "failed"}, false, &inference.ModelStreamInferResponse{}},
		{"small outputs", &inference.ModelInferResponse{Id: "s", RawOutputContents: [][]byte{{1}, {}}}, false, &inference.ModelInferResponse{}},
		{"other message", &inference.ModelMetadataResponse{Name: "m", Versions: []string{"1"}}, false, &inference.ModelMetadataResponse{}},
	}
	c := newCodec()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.msg)
			s, err := c.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(tc.msg, before) {
				t.Fatal("Marshal changed the message")
			}
			got := tc.wantEmpty
			if err := proto.Unmarshal(s.Materialize(), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.msg) {
				t.Fatalf("decoded\n%v\nwant\n%v", got, tc.msg)
			}
			if shares(s, large) != tc.zeroCopy {
				t.Fatalf("large output passed without a copy: %v, want %v", shares(s, large), tc.zeroCopy)
			}
			s.Free()
		})
	}
}

// FuzzCodecUnmarshal holds the codec's decoders, for large and for small
// requests, to protobuf's own decoding on arbitrary bytes: the same
// message, or an error in both.
func FuzzCodecUnmarshal(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	f.Add([]byte{})
	f.Add(wire(&testing.T{}, inferRequest(rng, 8, 3)))
	f.Add(shuffleFields(&testing.T{}, rng, wire(&testing.T{}, inferRequest(rng, 5, 0, 2))))
	f.Add(wire(&testing.T{}, commonRequest()))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &inference.ModelInferRequest{}
		stdErr := proto.Unmarshal(b, want)
		for name, decode := range map[string]func([]byte, *inference.ModelInferRequest) error{
			"aliasing": unmarshalInfer, "small": unmarshalSmall,
		} {
			got := &inference.ModelInferRequest{}
			err := decode(bytes.Clone(b), got)
			if (err == nil) != (stdErr == nil) {
				t.Fatalf("%s decoder error %v, protobuf error %v", name, err, stdErr)
			}
			if err == nil && !proto.Equal(got, want) {
				t.Fatalf("%s decoder decoded\n%v\nprotobuf decoded\n%v", name, got, want)
			}
		}
	})
}

// BenchmarkCodec compares the codec with the standard protobuf codec on
// simple's request and response and on an image classifier's.
func BenchmarkCodec(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	std := newCodec().std
	codecs := []struct {
		name string
		c    interface {
			Marshal(any) (mem.BufferSlice, error)
			Unmarshal(mem.BufferSlice, any) error
		}
	}{{"standard", std}, {"onnxserve", newCodec()}}
	for _, size := range []struct {
		name    string
		in, out []int
	}{{"simple", []int{64, 64}, []int{64, 64}}, {"image", []int{3 * 48 * 192 * 4}, []int{8, 3 * 48 * 192 * 4}}} {
		// simple's request as clients send it; the image request carries
		// parameters as well.
		req := wire(&testing.T{}, commonRequest())
		if size.name != "simple" {
			req = wire(&testing.T{}, inferRequest(rng, size.in...))
		}
		resp := &inference.ModelInferResponse{ModelName: "m", ModelVersion: "1", Id: "r"}
		for i, n := range size.out {
			resp.Outputs = append(resp.Outputs, &inference.ModelInferResponse_InferOutputTensor{Name: "OUT" + strconv.Itoa(i), Datatype: "UINT8", Shape: []int64{1, int64(n)}})
			resp.RawOutputContents = append(resp.RawOutputContents, make([]byte, n))
		}
		for _, c := range codecs {
			b.Run(size.name+"/unmarshal/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(req)))
				b.ReportAllocs()
				for b.Loop() {
					// The transport hands over pooled buffers, as here.
					buf := mem.Copy(req, mem.DefaultBufferPool())
					m := &inference.ModelInferRequest{}
					if err := c.c.Unmarshal(mem.BufferSlice{buf}, m); err != nil {
						b.Fatal(err)
					}
					buf.Free()
					// The call answered, the server recycles its buffer.
					if ours, ok := c.c.(*codec); ok {
						ours.release(m, true)
					}
				}
			})
			b.Run(size.name+"/marshal/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s, err := c.c.Marshal(resp)
					if err != nil {
						b.Fatal(err)
					}
					s.Free()
				}
			})
		}
	}
}

// TestLargeRequestsKeepTheirInputs sends large requests concurrently, as
// unary calls and on streams, to a model that echoes its input: each
// answer must be its own request's bytes although receive buffers are
// recycled between calls, and once every call is answered, failed ones
// included, no request holds a buffer.
func TestLargeRequestsKeepTheirInputs(t *testing.T) {
	e := newEnv(t, Config{})
	model := identityName(tensor.Uint8)
	request := func(seed uint64) (*inference.ModelInferRequest, []byte) {
		data := make([]byte, 3*aliasFrom+int(seed%1000))
		rng := rand.New(rand.NewPCG(seed, seed))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		return &inference.ModelInferRequest{
			ModelName: model, Id: strconv.FormatUint(seed, 10),
			Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT0", Datatype: "UINT8", Shape: []int64{int64(len(data))}}},
			RawInputContents: [][]byte{data},
		}, data
	}
	const workers, calls = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := range workers {
		wg.Go(func() {
			if w%2 == 0 {
				for i := range calls {
					req, want := request(uint64(w*calls + i))
					resp, err := e.client.ModelInfer(testCtx(t), req)
					if err != nil {
						errs <- err
						continue
					}
					if !bytes.Equal(resp.GetRawOutputContents()[0], want) {
						errs <- fmt.Errorf("unary call %s answered with another request's bytes", req.Id)
					}
				}
				return
			}
			stream, err := e.client.ModelStreamInfer(testCtx(t))
			if err != nil {
				errs <- err
				return
			}
			wants := map[string][]byte{}
			for i := range calls {
				req, want := request(uint64(w*calls + i))
				wants[req.Id] = want
				if err := stream.Send(req); err != nil {
					errs <- err
					return
				}
			}
			if err := stream.CloseSend(); err != nil {
				errs <- err
				return
			}
			for range calls {
				resp, err := stream.Recv()
				if err != nil {
					errs <- err
					return
				}
				r := resp.GetInferResponse()
				if resp.GetErrorMessage() != "" || !bytes.Equal(r.GetRawOutputContents()[0], wants[r.GetId()]) {
					errs <- fmt.Errorf("stream call %s: error %q or another request's bytes", r.GetId(), resp.GetErrorMessage())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Failures: a model that fails its run, and a request refused before
	// it runs (its shape does not match its bytes).
	failing, _ := request(1)
	failing.ModelName, failing.Inputs[0].Datatype = "fail", "FP32"
	failing.Inputs[0].Shape = []int64{int64(len(failing.RawInputContents[0]) / 4)}
	failing.RawInputContents[0] = failing.RawInputContents[0][:4*failing.Inputs[0].Shape[0]]
	invalid, _ := request(2)
	invalid.Inputs[0].Shape = []int64{1}
	for _, req := range []*inference.ModelInferRequest{failing, invalid} {
		if _, err := e.client.ModelInfer(testCtx(t), req); err == nil {
			t.Fatalf("request %s to %s succeeded", req.Id, req.ModelName)
		}
	}
	if n := e.server.codec.holding(); n != 0 {
		t.Fatalf("%d requests still hold receive buffers after every call was answered", n)
	}
}

func TestCodecForgetsDroppedRequests(t *testing.T) {
	c := newCodec()
	b := wire(t, inferRequest(rand.New(rand.NewPCG(9, 9)), 2*aliasFrom))
	func() {
		req := &inference.ModelInferRequest{}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, req); err != nil {
			t.Fatal(err)
		}
		if c.holding() != 1 {
			t.Fatalf("holding %d requests after one decode, want 1", c.holding())
		}
	}()
	// The request is unreachable now; its cleanup removes the entry.
	deadline := time.Now().Add(defaultTestTimeout)
	for c.holding() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a dropped request's entry outlived the request")
		}
		runtime.GC()
		runtime.Gosched()
	}
	req := &inference.ModelInferRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, req); err != nil {
		t.Fatal(err)
	}
	c.release(req, true)
	if c.holding() != 0 || req.RawInputContents != nil {
		t.Fatalf("after release: holding %d, raw contents %d", c.holding(), len(req.RawInputContents))
	}
}

// commonRequest is what most clients send: no parameters, no typed
// contents.
func commonRequest() *inference.ModelInferRequest {
	return &inference.ModelInferRequest{
		ModelName: "simple", ModelVersion: "1", Id: "r1",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{1, -3, 1 << 40}},
		},
		Outputs:          []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUTPUT1"}},
		RawInputContents: [][]byte{make([]byte, 64), {1, 2, 3}},
	}
}

// TestDecodeCommon checks that the small-request decoder takes common
// requests itself, aliasing the message rather than copying from it, and
// leaves the rest to protobuf.
func TestDecodeCommon(t *testing.T) {
	b := wire(t, commonRequest())
	got := &inference.ModelInferRequest{}
	if !decodeCommon(b, got) {
		t.Fatal("a common request fell back to protobuf")
	}
	if !proto.Equal(got, commonRequest()) {
		t.Fatalf("decoded\n%v\nwant\n%v", got, commonRequest())
	}
	inside := func(p unsafe.Pointer) bool {
		return uintptr(p) >= uintptr(unsafe.Pointer(&b[0])) && uintptr(p) < uintptr(unsafe.Pointer(&b[0]))+uintptr(len(b))
	}
	if !inside(unsafe.Pointer(unsafe.StringData(got.ModelName))) || !inside(unsafe.Pointer(&got.RawInputContents[0][0])) {
		t.Fatal("strings or raw contents were copied, not aliased")
	}
	// Unpacked shapes are valid protobuf too.
	unpacked := protowire.AppendTag(nil, fieldTensorShape, protowire.VarintType)
	unpacked = protowire.AppendVarint(unpacked, 7)
	in := protowire.AppendBytes(protowire.AppendTag(nil, fieldInputs, protowire.BytesType), unpacked)
	got = &inference.ModelInferRequest{}
	if !decodeCommon(in, got) || len(got.Inputs) != 1 || !slices.Equal(got.Inputs[0].Shape, []int64{7}) {
		t.Fatalf("unpacked shape: %v", got)
	}
	for name, req := range map[string]*inference.ModelInferRequest{
		"request parameters": {Parameters: map[string]*inference.InferParameter{"p": {}}},
		"typed contents":     {Inputs: []*inference.ModelInferRequest_InferInputTensor{{Contents: &inference.InferTensorContents{IntContents: []int32{1}}}}},
		"input parameters":   {Inputs: []*inference.ModelInferRequest_InferInputTensor{{Parameters: map[string]*inference.InferParameter{"p": {}}}}},
		"output parameters":  {Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Parameters: map[string]*inference.InferParameter{"p": {}}}}},
	} {
		if decodeCommon(wire(t, req), &inference.ModelInferRequest{}) {
			t.Errorf("%s: taken by the small decoder, which does not read them", name)
		}
	}
	if decodeCommon([]byte{0x0a, 0x02, 0xff, 0xfe}, &inference.ModelInferRequest{}) {
		t.Error("a model name that is not UTF-8 was accepted")
	}
}

// TestAppendCommonResponse holds the direct encoding to protobuf's, byte
// for byte, on the responses the server builds, and checks that anything
// else is left to protobuf.
func TestAppendCommonResponse(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range 200 {
		m := &inference.ModelInferResponse{Id: strconv.Itoa(i)}
		if rng.IntN(2) == 0 {
			m.ModelName, m.ModelVersion = "m"+strconv.Itoa(rng.IntN(1000)), strconv.Itoa(rng.IntN(3))
		}
		for j := range rng.IntN(4) {
			o := &inference.ModelInferResponse_InferOutputTensor{Name: "OUT" + strconv.Itoa(j), Datatype: []string{"FP32", "INT64", ""}[rng.IntN(3)]}
			for range rng.IntN(4) {
				o.Shape = append(o.Shape, []int64{-1, 0, 1, 16, 1 << 33, -(1 << 40)}[rng.IntN(6)])
			}
			m.Outputs = append(m.Outputs, o)
			m.RawOutputContents = append(m.RawOutputContents, make([]byte, rng.IntN(100)))
		}
		raws := m.RawOutputContents
		m.RawOutputContents = nil
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m.RawOutputContents = raws
		got, ok := appendCommonResponse(nil, m)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("response %d: direct encoding %x (taken %v), protobuf's %x", i, got, ok, want)
		}
	}
	for name, m := range map[string]*inference.ModelInferResponse{
		"parameters":        {Parameters: map[string]*inference.InferParameter{"p": {}}},
		"output parameters": {Outputs: []*inference.ModelInferResponse_InferOutputTensor{{Parameters: map[string]*inference.InferParameter{"p": {}}}}},
		"typed contents":    {Outputs: []*inference.ModelInferResponse_InferOutputTensor{{Contents: &inference.InferTensorContents{Fp32Contents: []float32{1}}}}},
		"nil output":        {Outputs: []*inference.ModelInferResponse_InferOutputTensor{nil}},
	} {
		if _, ok := appendCommonResponse(nil, m); ok {
			t.Errorf("%s: encoded directly, which leaves them out", name)
		}
	}
}
