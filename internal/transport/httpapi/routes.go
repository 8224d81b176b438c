package httpapi

import (
	"bytes"
	"net/http"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

const (
	contentJSON   = "application/json"
	contentBinary = "application/octet-stream"
	// headerInferenceLength is the binary tensor extension's header: the
	// length of the JSON document that starts the body.
	headerInferenceLength = "Inference-Header-Content-Length"
	// defaultStickyKey is the header (and request parameter) that pins a
	// caller to one traffic arm when a model's config names no other; the
	// header wins over the parameters.
	defaultStickyKey = "x-routing-key"
)

// maxSegments bounds the path segments routing looks at; no route has more
// than seven.
const maxSegments = 8

// maxNameLen bounds model names and versions taken from the path.
const maxNameLen = 256

// route splits the raw path by hand and dispatches on its segments; a
// model's routes are few and fixed, so a table of patterns would only add
// matching cost.
func (s *Server) route(ctx *fasthttp.RequestCtx, o *outcome) {
	var segs [maxSegments][]byte
	n, ok := splitPath(ctx.URI().PathOriginal(), &segs)
	if !ok || n == 0 || string(segs[0]) != "v2" {
		notFound(ctx)
		return
	}
	p := segs[1:n]
	switch {
	case len(p) == 0:
		if s.allow(ctx, http.MethodGet) && s.authorizeInference(ctx, o) {
			writeJSON(ctx, http.StatusOK, s.metadata)
		}
	case string(p[0]) == "health" && len(p) == 2:
		var up bool
		switch string(p[1]) {
		case "live":
			up = s.models.Live()
		case "ready":
			up = s.models.Ready()
		default:
			notFound(ctx)
			return
		}
		if s.allow(ctx, http.MethodGet) {
			writeStatus(ctx, up)
		}
	case string(p[0]) == "models" && len(p) >= 2:
		s.modelRoute(ctx, o, p[1:])
	case string(p[0]) == "repository":
		s.repositoryRoute(ctx, o, p[1:])
	default:
		notFound(ctx)
	}
}

// modelRoute serves /v2/models/{m}[/versions/{v}][/ready|/infer]; p starts
// at the model name.
func (s *Server) modelRoute(ctx *fasthttp.RequestCtx, o *outcome, p [][]byte) {
	if len(p) >= 2 && string(p[1]) == "rollout" {
		s.rolloutRoute(ctx, p)
		return
	}
	var action []byte
	var version []byte
	switch len(p) {
	case 1:
	case 2:
		action = p[1]
	case 3, 4:
		if string(p[1]) != "versions" {
			notFound(ctx)
			return
		}
		version = p[2]
		if len(p) == 4 {
			action = p[3]
		}
	default:
		notFound(ctx)
		return
	}
	method := http.MethodGet
	switch string(action) {
	case "", "ready", "stats", "drift":
	case "infer":
		method = http.MethodPost
	case "feedback":
		if version != nil {
			notFound(ctx)
			return
		}
		method = http.MethodPost
	case "quality":
	case "traffic":
		if version != nil {
			notFound(ctx)
			return
		}
		if ctx.IsPut() {
			method = http.MethodPut
		}
	default:
		notFound(ctx)
		return
	}
	if !s.allow(ctx, method) {
		return
	}
	o.infer = string(action) == "infer"
	// Model readiness is a health probe, and the traffic API is
	// management with its own rule; the rest needs an inference token
	// when one is configured.
	if string(action) != "ready" && string(action) != "traffic" && !s.authorizeInference(ctx, o) {
		return
	}
	model, ok := pathName(ctx, "model name", p[0])
	if !ok {
		return
	}
	ver := ""
	if version != nil {
		if ver, ok = pathName(ctx, "model version", version); !ok {
			return
		}
	}
	switch string(action) {
	case "":
		s.modelMetadata(ctx, model, ver)
	case "ready":
		s.modelReady(ctx, model, ver)
	case "stats":
		s.modelStats(ctx, model, ver)
	case "feedback":
		s.feedback(ctx, model)
	case "quality":
		s.qualityReport(ctx, model, ver)
	case "drift":
		s.modelDrift(ctx, model, ver)
	case "traffic":
		if s.authorized(ctx) {
			s.traffic(ctx, model)
		}
	default:
		s.infer(ctx, o, model, ver)
	}
}

// repositoryRoute serves /v2/repository/index and
// /v2/repository/models/{m}/load|unload; p starts after "repository".
func (s *Server) repositoryRoute(ctx *fasthttp.RequestCtx, o *outcome, p [][]byte) {
	switch {
	case len(p) == 1 && string(p[0]) == "index":
		if s.allow(ctx, http.MethodPost) && s.authorized(ctx) {
			s.repositoryIndex(ctx)
		}
	case len(p) == 3 && string(p[0]) == "models" && (string(p[2]) == "load" || string(p[2]) == "unload"):
		if !s.allow(ctx, http.MethodPost) || !s.authorized(ctx) {
			return
		}
		model, ok := pathName(ctx, "model name", p[1])
		if !ok {
			return
		}
		if string(p[2]) == "load" {
			s.loadModel(ctx, model)
		} else {
			s.unloadModel(ctx, model)
		}
	default:
		notFound(ctx)
	}
}

// inferTarget reports whether a request that never reached the handler
// was addressed to an infer endpoint, and the model and version it named.
func inferTarget(ctx *fasthttp.RequestCtx) (model, version string, ok bool) {
	if !ctx.IsPost() {
		return "", "", false
	}
	var segs [maxSegments][]byte
	n, ok := splitPath(ctx.URI().PathOriginal(), &segs)
	if !ok || n < 4 || string(segs[0]) != "v2" || string(segs[1]) != "models" || string(segs[n-1]) != "infer" {
		return "", "", false
	}
	switch {
	case n == 4:
		return unescaped(segs[2]), "", true
	case n == 6 && string(segs[3]) == "versions":
		return unescaped(segs[2]), unescaped(segs[4]), true
	}
	return "", "", false
}

// unescaped is a path segment unescaped, or as it is when malformed.
func unescaped(seg []byte) string {
	if s, err := url.PathUnescape(string(seg)); err == nil {
		return s
	}
	return string(seg)
}

// splitPath cuts a raw path such as "/v2/models/m/infer" into its segments.
// It reports false for a path that does not start with '/', has empty
// segments, or has more segments than any route.
func splitPath(path []byte, segs *[maxSegments][]byte) (int, bool) {
	if len(path) == 0 || path[0] != '/' {
		return 0, false
	}
	path = path[1:]
	n := 0
	for len(path) > 0 {
		if n == maxSegments {
			return 0, false
		}
		i := bytes.IndexByte(path, '/')
		if i < 0 {
			segs[n] = path
			n++
			break
		}
		if i == 0 {
			return 0, false
		}
		segs[n] = path[:i]
		n++
		path = path[i+1:]
		if len(path) == 0 {
			return 0, false // a trailing slash
		}
	}
	return n, true
}

// pathName unescapes and validates a model name or version from the path,
// answering 400 when it is unusable.
func pathName(ctx *fasthttp.RequestCtx, what string, seg []byte) (string, bool) {
	name := string(seg)
	if bytes.IndexByte(seg, '%') >= 0 {
		u, err := url.PathUnescape(name)
		if err != nil {
			writeError(ctx, http.StatusBadRequest, what+": bad percent-encoding in "+string(seg))
			return "", false
		}
		name = u
	}
	if err := checkName(name); err != nil {
		writeError(ctx, http.StatusBadRequest, what+" "+err.Error())
		return "", false
	}
	return name, true
}

// checkName rejects names no repository folder can have.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." {
		return tensor.Invalidf("%q is not a valid name", name)
	}
	if len(name) > maxNameLen {
		return tensor.Invalidf("is longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return tensor.Invalidf("%q contains a control character or a path separator", name)
		}
	}
	return nil
}

// allow answers 405 unless the request uses method (HEAD counts as GET).
func (s *Server) allow(ctx *fasthttp.RequestCtx, method string) bool {
	m := ctx.Method()
	if string(m) == method || (method == http.MethodGet && string(m) == http.MethodHead) {
		return true
	}
	ctx.Response.Header.Set("Allow", method)
	writeError(ctx, http.StatusMethodNotAllowed, "method "+string(m)+" not allowed; use "+method)
	return false
}

func notFound(ctx *fasthttp.RequestCtx) {
	writeError(ctx, http.StatusNotFound, "no such endpoint: "+string(ctx.Method())+" "+string(ctx.URI().PathOriginal()))
}

// writeStatus answers a health or readiness probe: 200 or 503, empty body.
func writeStatus(ctx *fasthttp.RequestCtx, ok bool) {
	if ok {
		ctx.SetStatusCode(http.StatusOK)
	} else {
		ctx.SetStatusCode(http.StatusServiceUnavailable)
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, body []byte) {
	ctx.SetStatusCode(code)
	ctx.SetContentType(contentJSON)
	ctx.SetBody(body)
}
