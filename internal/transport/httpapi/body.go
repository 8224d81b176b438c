package httpapi

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// inferencePrefix starts every path whose POST carries an inference body.
var inferencePrefix = []byte("/v2/models/")

// headerReceived returns fasthttp's per-request hook, which runs once a
// request's head is in and before its body is read: the body gets
// bodyConfig, unless the request needs an inference token it lacks. Then
// no body is read at all (a 1-byte limit) and the request is answered 401
// (handleProtocolError), so an unauthenticated client costs no body
// reading or buffering however large a body it declares.
func (s *Server) headerReceived(bodyConfig fasthttp.RequestConfig) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	refused := bodyConfig
	refused.MaxRequestBodySize = 1
	return func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		if s.unauthenticatedBody(h) {
			return refused
		}
		return bodyConfig
	}
}

// unauthenticatedBody reports whether h is a POST to an inference path
// without a valid inference token, when tokens are required.
func (s *Server) unauthenticatedBody(h *fasthttp.RequestHeader) bool {
	if s.cfg.InferenceTokens == nil || !h.IsPost() || !bytes.HasPrefix(h.RequestURI(), inferencePrefix) {
		return false
	}
	_, err := s.cfg.InferenceTokens.Match(string(h.Peek("Authorization")))
	return err != nil
}
