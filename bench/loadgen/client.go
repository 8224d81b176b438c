package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inference "github.com/onnxserve/onnxserve/proto"
)

// caller sends one request for variant v and checks the answer. Each
// worker owns its caller; a caller is not safe for concurrent use.
type caller interface {
	call(ctx context.Context, v int) error
}

// Protocol names accepted by --protocol.
const (
	protoGRPC       = "grpc"
	protoHTTPJSON   = "http-json"
	protoHTTPBinary = "http-binary"
)

// grpcTarget holds the connections and prebuilt requests shared by the
// gRPC callers.
type grpcTarget struct {
	conns   []*grpc.ClientConn
	clients []inference.GRPCInferenceServiceClient
	reqs    []*inference.ModelInferRequest
	w       *workload
}

func newGRPCTarget(addr, model, version string, conns int, w *workload) (*grpcTarget, error) {
	t := &grpcTarget{w: w}
	for range conns {
		// Each ClientConn is its own HTTP/2 connection.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			t.close()
			return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
		}
		t.conns = append(t.conns, cc)
		t.clients = append(t.clients, inference.NewGRPCInferenceServiceClient(cc))
	}
	for _, data := range w.variants {
		req := &inference.ModelInferRequest{ModelName: model, ModelVersion: version, RawInputContents: data}
		for _, s := range w.inputs {
			req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{Name: s.name, Datatype: s.datatype, Shape: s.shape})
		}
		t.reqs = append(t.reqs, req)
	}
	return t, nil
}

func (t *grpcTarget) close() {
	for _, cc := range t.conns {
		_ = cc.Close()
	}
}

// caller returns worker i's caller; workers spread over the connections.
func (t *grpcTarget) caller(i int) caller {
	return &grpcCaller{t: t, c: t.clients[i%len(t.clients)]}
}

type grpcCaller struct {
	t    *grpcTarget
	c    inference.GRPCInferenceServiceClient
	outs []output
}

func (g *grpcCaller) call(ctx context.Context, v int) error {
	resp, err := g.c.ModelInfer(ctx, g.t.reqs[v])
	if err != nil {
		return err
	}
	if len(resp.RawOutputContents) != len(resp.Outputs) {
		return fmt.Errorf("%w: %d outputs but %d raw_output_contents", errVerify, len(resp.Outputs), len(resp.RawOutputContents))
	}
	g.outs = g.outs[:0]
	for i, o := range resp.Outputs {
		g.outs = append(g.outs, output{name: o.Name, datatype: o.Datatype, shape: o.Shape, data: resp.RawOutputContents[i]})
	}
	return g.t.w.verify(v, g.outs)
}

// httpTarget holds the connection pool and prebuilt bodies shared by the
// HTTP callers.
type httpTarget struct {
	client *fasthttp.HostClient
	uri    string
	binary bool
	bodies [][]byte
	// headerLens[v] is the JSON part's length of a binary request.
	headerLens []int
	w          *workload
}

func newHTTPTarget(addr, model, version string, binaryExt bool, conns int, w *workload) *httpTarget {
	uri := "http://" + addr + "/v2/models/" + model
	if version != "" {
		uri += "/versions/" + version
	}
	t := &httpTarget{
		client: &fasthttp.HostClient{
			Addr: addr,
			// A plain dial: the address is an IP, so fasthttp's default
			// dialer would only add its process-wide DNS cache.
			Dial:                     func(a string) (net.Conn, error) { return net.Dial("tcp", a) },
			MaxConns:                 conns,
			ReadTimeout:              time.Minute,
			WriteTimeout:             time.Minute,
			NoDefaultUserAgentHeader: true,
		},
		uri:    uri + "/infer",
		binary: binaryExt,
		w:      w,
	}
	for _, data := range w.variants {
		var body []byte
		hl := -1
		if binaryExt {
			body, hl = binaryRequest(w.inputs, data)
		} else {
			body = jsonRequest(w.inputs, data)
		}
		t.bodies = append(t.bodies, body)
		t.headerLens = append(t.headerLens, hl)
	}
	return t
}

// jsonRequest encodes a v2 JSON infer request with flat data arrays.
func jsonRequest(specs []tensorSpec, data [][]byte) []byte {
	b := []byte(`{"inputs":[`)
	for i, s := range specs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInputHeader(b, s)
		b = append(b, `,"data":[`...)
		d := data[i]
		for j := 0; j < len(d); j += 4 {
			if j > 0 {
				b = append(b, ',')
			}
			u := binary.LittleEndian.Uint32(d[j:])
			if s.datatype == "INT32" {
				b = strconv.AppendInt(b, int64(int32(u)), 10)
			} else {
				b = strconv.AppendFloat(b, float64(math.Float32frombits(u)), 'g', -1, 32)
			}
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// binaryRequest encodes a request of the binary tensor extension: a JSON
// header naming each input's binary_data_size and asking for binary
// outputs, followed by the raw inputs in order. It returns the body and the
// header's length.
func binaryRequest(specs []tensorSpec, data [][]byte) ([]byte, int) {
	b := []byte(`{"inputs":[`)
	for i, s := range specs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInputHeader(b, s)
		b = append(b, `,"parameters":{"binary_data_size":`...)
		b = strconv.AppendInt(b, int64(len(data[i])), 10)
		b = append(b, "}}"...)
	}
	b = append(b, `],"parameters":{"binary_data_output":true}}`...)
	hl := len(b)
	for _, d := range data {
		b = append(b, d...)
	}
	return b, hl
}

func appendInputHeader(b []byte, s tensorSpec) []byte {
	b = append(b, `{"name":`...)
	b = strconv.AppendQuote(b, s.name)
	b = append(b, `,"datatype":"`...)
	b = append(b, s.datatype...)
	b = append(b, `","shape":[`...)
	for j, d := range s.shape {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

func (t *httpTarget) caller(int) caller {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(t.uri)
	req.Header.SetMethod(fasthttp.MethodPost)
	if t.binary {
		req.Header.SetContentType("application/octet-stream")
	} else {
		req.Header.SetContentType("application/json")
	}
	return &httpCaller{t: t, req: req, resp: fasthttp.AcquireResponse()}
}

type httpCaller struct {
	t    *httpTarget
	req  *fasthttp.Request
	resp *fasthttp.Response
	outs []output
}

// responseJSON is the part of a v2 infer response the checks read.
type responseJSON struct {
	Error   string `json:"error"`
	Outputs []struct {
		Name       string    `json:"name"`
		Datatype   string    `json:"datatype"`
		Shape      []int64   `json:"shape"`
		Data       []float64 `json:"data"`
		Parameters struct {
			BinaryDataSize *int `json:"binary_data_size"`
		} `json:"parameters"`
	} `json:"outputs"`
}

// errStatus is an HTTP answer other than 200.
type errStatus struct {
	code int
	msg  string
}

func (e *errStatus) Error() string { return fmt.Sprintf("http %d: %s", e.code, e.msg) }

func (h *httpCaller) call(_ context.Context, v int) error {
	h.req.SetBodyRaw(h.t.bodies[v])
	if hl := h.t.headerLens[v]; hl >= 0 {
		h.req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(hl))
	}
	if err := h.t.client.Do(h.req, h.resp); err != nil {
		return err
	}
	outs, err := decodeHTTPResponse(h.resp.StatusCode(), h.resp.Body(), h.resp.Header.Peek("Inference-Header-Content-Length"), h.outs[:0])
	h.outs = outs
	if err != nil {
		return err
	}
	return h.t.w.verify(v, outs)
}

// decodeHTTPResponse decodes a v2 infer response, JSON or with the binary
// extension (headerLen is the Inference-Header-Content-Length header, empty
// without it), appending its outputs to outs.
func decodeHTTPResponse(code int, body, headerLen []byte, outs []output) ([]output, error) {
	js, bin := body, []byte(nil)
	if len(headerLen) > 0 {
		n, err := strconv.Atoi(string(headerLen))
		if err != nil || n < 0 || n > len(body) {
			return outs, fmt.Errorf("%w: Inference-Header-Content-Length %q with a %d-byte body", errVerify, headerLen, len(body))
		}
		js, bin = body[:n], body[n:]
	}
	var r responseJSON
	if err := json.Unmarshal(js, &r); err != nil {
		return outs, fmt.Errorf("%w: http %d: response is not JSON: %v", errVerify, code, err)
	}
	if code != fasthttp.StatusOK {
		return outs, &errStatus{code: code, msg: r.Error}
	}
	for _, o := range r.Outputs {
		out := output{name: o.Name, datatype: o.Datatype, shape: o.Shape}
		if p := o.Parameters.BinaryDataSize; p != nil {
			if *p < 0 || *p > len(bin) {
				return outs, fmt.Errorf("%w: output %q: binary_data_size %d with %d binary bytes left", errVerify, o.Name, *p, len(bin))
			}
			out.data, bin = bin[:*p], bin[*p:]
		} else {
			out.data = rawFromJSON(o.Datatype, o.Data)
		}
		outs = append(outs, out)
	}
	if len(bin) != 0 {
		return outs, fmt.Errorf("%w: %d binary bytes no output claims", errVerify, len(bin))
	}
	return outs, nil
}

// rawFromJSON turns JSON numbers into raw little-endian data of datatype,
// so every wire form is checked the same way.
func rawFromJSON(datatype string, vals []float64) []byte {
	b := make([]byte, 4*len(vals))
	for i, f := range vals {
		var u uint32
		if datatype == "INT32" {
			u = uint32(int32(f))
		} else {
			u = math.Float32bits(float32(f))
		}
		binary.LittleEndian.PutUint32(b[4*i:], u)
	}
	return b
}
