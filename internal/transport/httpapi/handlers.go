package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi/jsonscan"
)

// extensions are the v2 protocol extensions GET /v2 advertises.
var extensions = []string{"binary_tensor_data", "model_repository", "statistics", "parameters"}

func serverMetadata(version string) []byte {
	b, err := json.Marshal(struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}{"onnxserve", version, extensions})
	if err != nil {
		panic(err) // strings only; cannot fail
	}
	return b
}

// inferCall is one infer request on its way through the serving core. It
// is the request's metadata too: the serving core looks the model's sticky
// key up in it, during Infer only, while the fasthttp context is valid.
type inferCall struct {
	req     serving.Request
	decoded inferRequest
	ctx     *fasthttp.RequestCtx
	json    []byte // the request's JSON document, for parameter lookups
	idBuf   [transport.RequestIDLen]byte
}

// Get returns the header named key, else the request parameter of that
// name (a string, or an integer as its decimal text).
func (c *inferCall) Get(key string) string {
	if h := c.ctx.Request.Header.Peek(key); len(h) > 0 {
		return string(h)
	}
	return stickyParameter(c.json, key)
}

// infer serves POST /v2/models/{m}[/versions/{v}]/infer. Every request
// reaches the serving core exactly once, through Infer or, when it fails
// here first, Refuse; the labels Observe records come from its answer.
func (s *Server) infer(ctx *fasthttp.RequestCtx, o *outcome, model, version string) {
	c := &inferCall{ctx: ctx, req: serving.Request{Model: model, Version: version,
		Protocol: transport.ProtocolHTTP, Arrival: o.start}}
	c.req.Metadata = c
	resp, err := s.runInfer(ctx, o, c)
	// Answered by the serving core, the request's inputs are read no more.
	defer c.decoded.release(err == nil)
	ctx.Response.Header.Set(transport.RequestIDHeader, c.req.ID)
	if err != nil {
		o.model, o.version = serving.Labels(err)
		s.fail(ctx, err)
		return
	}
	o.model, o.version = resp.Model, resp.Version
	for _, t := range resp.Outputs {
		// The encoder walks the data by the shape; a model that breaks the
		// contract gets a 500 here rather than a garbled response.
		if err := t.Validate(); err != nil {
			s.fail(ctx, modelOutputError{err})
			return
		}
	}
	ctx.SetStatusCode(http.StatusOK)
	body := ctx.Response.SwapBody(nil)[:0]
	body, jsonLen := appendInferResponse(body, resp.Model, resp.Version, c.req.ID, resp.Outputs, c.decoded.binaryFor)
	ctx.Response.SwapBody(body)
	if jsonLen >= 0 {
		ctx.SetContentType(contentBinary)
		ctx.Response.Header.Set(headerInferenceLength, strconv.Itoa(jsonLen))
	} else {
		ctx.SetContentType(contentJSON)
	}
}

// runInfer decodes c's body and runs it. Its error is labelled by the
// serving core.
func (s *Server) runInfer(ctx *fasthttp.RequestCtx, o *outcome, c *inferCall) (*serving.Response, error) {
	headerID := ctx.Request.Header.Peek(transport.RequestIDHeader)
	refuse := func(err error) error {
		if c.req.ID == "" {
			c.req.ID = transport.RequestIDInto("", string(headerID), &c.idBuf)
		}
		o.id = c.req.ID
		return s.inf.Refuse(&c.req, err)
	}
	if s.cfg.RateLimiter != nil {
		if err := s.cfg.RateLimiter.Check(guard.ClientKey(o.tokenIndex, ctx.RemoteAddr())); err != nil {
			return nil, refuse(err)
		}
	}
	body := ctx.PostBody()
	headerLen := -1
	if h := ctx.Request.Header.Peek(headerInferenceLength); h != nil {
		n, err := strconv.Atoi(string(h))
		if err != nil || n < 0 {
			return nil, refuse(tensor.Invalidf("header %s: %q is not a non-negative integer", headerInferenceLength, h))
		}
		headerLen = n
	}
	if ce := ctx.Request.Header.ContentEncoding(); len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
		return nil, refuse(tensor.Invalidf("Content-Encoding %q is not supported; send the body uncompressed", ce))
	}
	charged, err := s.chargeDecode(body, headerLen)
	defer s.cfg.Budget.Refund(charged)
	if err != nil {
		return nil, refuse(err)
	}
	// decodeInferRequest copies what it keeps, so nothing handed to the
	// backend refers to fasthttp's buffers once this handler returns.
	c.decoded, err = decodeInferRequest(body, headerLen, "", s.cfg.Limits)
	if err != nil {
		return nil, refuse(err)
	}
	req := &c.decoded
	c.req.ID = transport.RequestIDInto(req.ID, string(headerID), &c.idBuf)
	o.id = c.req.ID
	c.json = body
	if headerLen >= 0 && headerLen <= len(body) {
		c.json = body[:headerLen]
	}
	c.req.Inputs, c.req.Outputs, c.req.RoutingKey = req.Inputs, req.outputNames(), req.RoutingKey
	c.req.Sequence = req.Sequence
	// The fasthttp RequestCtx is not used as the context: its Done fires
	// on server shutdown, which must let in-flight requests finish.
	cctx, cancel, err := transport.WithTimeoutMicros(context.Background(), req.Timeout)
	defer cancel()
	if err != nil {
		return nil, refuse(err)
	}
	return s.inf.Infer(cctx, &c.req)
}

// stickyParameter returns the request parameter named key in the JSON
// document js as a routing key: a string, or an integer as its decimal
// text; "" when absent or of another type. Only a model with a traffic
// split asks, and only when the header of that name is absent.
func stickyParameter(js []byte, key string) string {
	d := decoder{s: jsonscan.New(js)}
	s := &d.s
	if s.Open('{') != nil {
		return ""
	}
	var val string
	_ = s.Members(func(k []byte) error {
		if string(k) != "parameters" {
			return s.Skip()
		}
		if err := s.Open('{'); err != nil {
			return err
		}
		return s.Members(func(k []byte) error {
			if string(k) != key {
				return s.Skip()
			}
			v, err := d.routingKey()
			if err != nil {
				return err
			}
			val = v
			return nil
		})
	})
	return val
}

// modelOutputError marks an output that does not match its own shape: the
// model's fault, so a 500, whatever the wrapped validation error says.
type modelOutputError struct{ err error }

func (e modelOutputError) Error() string {
	return "model returned a malformed output: " + e.err.Error()
}

// tensorMetadata and modelMetadata are the v2 model metadata document.
type tensorMetadata struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

func specsMetadata(specs []tensor.Spec) []tensorMetadata {
	out := make([]tensorMetadata, len(specs))
	for i, sp := range specs {
		shape := sp.Shape
		if shape == nil {
			shape = []int64{}
		}
		out[i] = tensorMetadata{Name: sp.Name, DataType: sp.DataType.String(), Shape: shape}
	}
	return out
}

// modelMetadata serves GET /v2/models/{m}[/versions/{v}].
func (s *Server) modelMetadata(ctx *fasthttp.RequestCtx, model, version string) {
	md, err := s.models.ModelMetadata(model, version)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	doc := modelMetadata{
		Name:     md.Name,
		Versions: md.Versions,
		Platform: md.Platform,
		Inputs:   specsMetadata(md.Inputs),
		Outputs:  specsMetadata(md.Outputs),
	}
	if doc.Versions == nil {
		doc.Versions = []string{}
	}
	s.writeDocument(ctx, doc)
}

// modelReady serves GET /v2/models/{m}[/versions/{v}]/ready.
func (s *Server) modelReady(ctx *fasthttp.RequestCtx, model, version string) {
	ok, err := s.models.ModelReady(model, version)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	writeStatus(ctx, ok)
}

// authorizeInference applies Config.InferenceTokens, answering 401 when
// the caller has no valid token, and records the token for the rate
// limiter.
func (s *Server) authorizeInference(ctx *fasthttp.RequestCtx, o *outcome) bool {
	if s.cfg.InferenceTokens == nil {
		return true
	}
	i, err := s.cfg.InferenceTokens.Match(string(ctx.Request.Header.Peek("Authorization")))
	if err != nil {
		s.fail(ctx, err)
		return false
	}
	o.tokenIndex = i
	return true
}

// authorized applies the management API's access rule, answering 401 or
// 403 when it refuses.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	err := guard.AuthorizeAdmin(s.cfg.AdminToken, s.cfg.AdminAllowLoopback, string(ctx.Request.Header.Peek("Authorization")), ctx.RemoteAddr())
	if err != nil {
		s.fail(ctx, err)
		return false
	}
	return true
}

// indexEntry is one row of the repository index document.
type indexEntry struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// Batching is an extension: how an auto batch size was chosen.
	Batching string `json:"batching,omitempty"`
}

// repositoryIndex serves POST /v2/repository/index; the optional body
// {"ready": true} keeps only READY versions.
func (s *Server) repositoryIndex(ctx *fasthttp.RequestCtx) {
	var q struct {
		Ready bool `json:"ready"`
	}
	if body := ctx.PostBody(); len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &q); err != nil {
			s.fail(ctx, tensor.Invalidf("repository index request: %v", err))
			return
		}
	}
	out := []indexEntry{}
	for _, e := range s.repo.Index() {
		if q.Ready && e.State != serving.StateReady {
			continue
		}
		out = append(out, indexEntry{Name: e.Name, Version: e.Version, State: string(e.State), Reason: s.cfg.Scrub.Scrub(e.Reason), Batching: e.Batching})
	}
	s.writeDocument(ctx, out)
}

// loadModel serves POST /v2/repository/models/{m}/load. The optional body
// {"parameters": {"config": "<config.yaml text>"}} overrides the model's
// config.yaml.
func (s *Server) loadModel(ctx *fasthttp.RequestCtx, model string) {
	var override []byte
	if body := ctx.PostBody(); len(bytes.TrimSpace(body)) > 0 {
		var q struct {
			Parameters map[string]json.RawMessage `json:"parameters"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			s.fail(ctx, tensor.Invalidf("load request: %v", err))
			return
		}
		for k, v := range q.Parameters {
			switch {
			case k == "config":
				var text string
				if err := json.Unmarshal(v, &text); err != nil {
					s.fail(ctx, tensor.Invalidf("load request: parameter \"config\" must be a string holding the config.yaml text"))
					return
				}
				override = []byte(text)
			case strings.HasPrefix(k, "file:"):
				// Ignoring uploaded model files would load something other
				// than what the caller sent.
				s.fail(ctx, tensor.Invalidf("load request: parameter %q: uploading model files is not supported", k))
				return
			}
		}
	}
	if err := s.repo.LoadModel(context.Background(), model, override); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(http.StatusOK)
}

// unloadModel serves POST /v2/repository/models/{m}/unload.
func (s *Server) unloadModel(ctx *fasthttp.RequestCtx, model string) {
	if err := s.repo.UnloadModel(model); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(http.StatusOK)
}

// writeDocument answers 200 with v encoded as JSON; v holds only types that
// cannot fail to encode.
func (s *Server) writeDocument(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, b)
}
