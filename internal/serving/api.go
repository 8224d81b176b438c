package serving

import (
	"context"
	"errors"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Errors a caller maps to protocol statuses (see package transport).
var (
	// ErrModelNotFound: no model of that name is in the repository.
	ErrModelNotFound = errors.New("model not found")
	// ErrVersionNotFound: the model exists but not that version.
	ErrVersionNotFound = errors.New("version not found")
	// ErrNotReady: the model or version exists but cannot serve now.
	ErrNotReady = errors.New("not ready")
	// ErrShuttingDown: the server is draining and takes no new work.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrInvalidRequest wraps errors in what the client sent.
	ErrInvalidRequest = tensor.ErrInvalid
	// ErrOverloaded: the version's queue is full; retry later.
	ErrOverloaded = batcher.ErrOverloaded
	// ErrClosed: the version's batcher stopped taking work (it is being
	// retired); transient.
	ErrClosed = batcher.ErrClosed
	// ErrUnauthorized: a management call without valid credentials.
	ErrUnauthorized = errors.New("unauthorized")
)

// Model is one loaded, runnable model version as the Loader returns it.
// Run must be safe for concurrent use and must not keep its inputs.
type Model interface {
	Inputs() []tensor.Spec
	Outputs() []tensor.Spec
	Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error)
	Close() error
}

// Request is one inference request after decoding. Inputs may be in any
// order. The serving core keeps the Request until Infer returns, so callers
// must not reuse its buffers before then.
type Request struct {
	Model   string
	Version string // "" lets the router choose
	ID      string
	Inputs  []tensor.Tensor
	// Outputs names the outputs to return; empty returns all of them.
	Outputs []string
	// RoutingKey pins a caller to one traffic arm; "" routes at random.
	RoutingKey string
}

// Response is the result of one Infer call.
type Response struct {
	Model   string
	Version string // the version that actually served the request
	ID      string
	Outputs []tensor.Tensor

	all []tensor.Tensor // every model output, for shadow comparison
}

// ModelMetadata describes a model version as the v2 metadata endpoints do.
type ModelMetadata struct {
	Name     string
	Versions []string
	Platform string
	Inputs   []tensor.Spec
	Outputs  []tensor.Spec
}

// State is a version's lifecycle state as the repository index reports it.
type State string

// The states of DESIGN §1.
const (
	StateReady       State = "READY"
	StateLoading     State = "LOADING"
	StateUnavailable State = "UNAVAILABLE"
	StateUnloading   State = "UNLOADING"
)

// IndexEntry is one row of the repository index.
type IndexEntry struct {
	Name    string
	Version string
	State   State
	Reason  string
}
