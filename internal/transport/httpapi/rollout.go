package httpapi

import (
	"net/http"

	"github.com/valyala/fasthttp"
)

// Rollouts is progressive delivery as the management API offers it. Each
// method returns the model's rollout as it stands after the call, as a
// document to encode as JSON. Errors map through the status table (an
// unknown model 404, a bad request 400, a rollout already running or none
// running 409). Safe for concurrent use.
type Rollouts interface {
	// StartRollout starts one from a request body such as
	// {"candidate":"3"} plus optional overrides of the model's policy.
	StartRollout(model string, body []byte) (any, error)
	// Rollout shows phase, step, weights, gates and history.
	Rollout(model string) (any, error)
	// PromoteRollout gives the candidate all traffic and ends the rollout.
	PromoteRollout(model string) (any, error)
	// AbortRollout gives the baseline all traffic and ends the rollout.
	AbortRollout(model string) (any, error)
}

// rolloutRoute serves GET|POST /v2/models/{m}/rollout and POST
// /v2/models/{m}/rollout/promote|abort; p starts at the model name. They
// are management calls.
func (s *Server) rolloutRoute(ctx *fasthttp.RequestCtx, p [][]byte) {
	if s.rollouts == nil || len(p) > 3 || (len(p) == 3 && string(p[2]) != "promote" && string(p[2]) != "abort") {
		notFound(ctx)
		return
	}
	method := http.MethodPost
	if len(p) == 2 && !ctx.IsPost() {
		method = http.MethodGet
	}
	if !s.allow(ctx, method) || !s.authorized(ctx) {
		return
	}
	model, ok := pathName(ctx, "model name", p[0])
	if !ok {
		return
	}
	var doc any
	var err error
	switch {
	case len(p) == 2 && method == http.MethodGet:
		doc, err = s.rollouts.Rollout(model)
	case len(p) == 2:
		doc, err = s.rollouts.StartRollout(model, ctx.PostBody())
	case string(p[2]) == "promote":
		doc, err = s.rollouts.PromoteRollout(model)
	default:
		doc, err = s.rollouts.AbortRollout(model)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.writeDocument(ctx, doc)
	ctx.SetStatusCode(http.StatusOK)
}
