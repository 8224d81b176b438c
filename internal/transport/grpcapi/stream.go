package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
	inference "github.com/onnxserve/onnxserve/proto"
)

// streamCall is one request of a ModelStreamInfer stream. resp and err are
// written by the goroutine that runs it before done is closed.
type streamCall struct {
	req   *inference.ModelInferRequest
	start time.Time
	done  chan struct{}
	resp  *inference.ModelInferResponse
	id    string
	err   error
	// after is the stream's previous call of the same sequence, which must
	// be answered before this one runs: a sequence's requests run in the
	// order the stream sent them.
	after *streamCall
}

// errStreamStopping ends streams when the server stops.
var errStreamStopping = status.Error(codes.Unavailable, "server is shutting down; open a new stream elsewhere")

// ModelStreamInfer answers each request of the stream, in request order,
// with its response or its error message; a failed request does not end the
// stream. Up to Config.StreamDepth requests run at once, so one stream can
// fill a batch.
//
// Three kinds of goroutine cooperate: a reader (Recv, then start a call), one
// goroutine per call, and this handler, which answers calls in order. Every
// call the reader starts is queued in pending, and the handler answers or
// at least waits for every queued call before it returns; intake stops
// under mu, so after stopIntake nothing more is queued. When the server
// stops, the requests already read are answered and the stream ends with
// UNAVAILABLE, so that open streams do not hold up a graceful stop.
func (s *service) ModelStreamInfer(stream inference.GRPCInferenceService_ModelStreamInferServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	depth := s.cfg.StreamDepth
	// A slot is taken before a call is queued and given back once it is
	// answered, so pending never holds more than depth calls and a send to
	// it never blocks.
	slots := make(chan struct{}, depth)
	pending := make(chan *streamCall, depth)
	recvDone := make(chan error, 1)
	var (
		mu      sync.Mutex
		stopped error // why intake stopped; nil while it runs
	)
	stopIntake := func(why error) {
		mu.Lock()
		if stopped == nil {
			stopped = why
		}
		mu.Unlock()
	}

	// The reader owns Recv. It exits on a Recv error, which comes at the
	// latest when this handler has returned and the stream is finished.
	go func() {
		// lastOf maps a sequence id to the stream's latest call of it;
		// the reader alone uses it.
		lastOf := map[string]*streamCall{}
		for {
			req, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			c := &streamCall{req: req, start: time.Now(), done: make(chan struct{}), id: requestID(ctx, req)}
			if seq, err := sequenceParams(req.GetParameters()); err == nil && seq.ID != "" {
				c.after = lastOf[seq.ID]
				if len(lastOf) >= 4*depth {
					for k, p := range lastOf {
						select {
						case <-p.done:
							delete(lastOf, k)
						default:
						}
					}
				}
				lastOf[seq.ID] = c
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				s.unstarted(req, c.id, context.Cause(ctx), c.start)
				s.codec.release(req, false)
				return
			}
			mu.Lock()
			if why := stopped; why != nil {
				// Read but never started: the stream's end status answers
				// it; it is still counted.
				mu.Unlock()
				s.unstarted(req, c.id, why, c.start)
				s.codec.release(req, false)
				return
			}
			pending <- c
			mu.Unlock()
			go s.runCall(ctx, c)
		}
	}()

	// answerRest answers every call still queued; intake must be stopped.
	answerRest := func(send bool) error {
		var sendErr error
		for {
			select {
			case c := <-pending:
				if err := s.answer(stream, c, send && sendErr == nil); err != nil {
					sendErr = err
					cancel()
				}
				<-slots
			default:
				return sendErr
			}
		}
	}

	for {
		select {
		case c := <-pending:
			err := s.answer(stream, c, true)
			<-slots
			if err != nil {
				// The client is gone: cut the other calls short, but still
				// wait for them and count them.
				cancel()
				stopIntake(context.Canceled)
				answerRest(false)
				return err
			}
		case err := <-recvDone:
			// The reader queued its last call before reporting.
			stopIntake(io.EOF)
			if sendErr := answerRest(true); sendErr != nil {
				return sendErr
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.quit:
			stopIntake(serving.ErrShuttingDown)
			if err := answerRest(true); err != nil {
				return err
			}
			return errStreamStopping
		}
	}
}

// runCall runs one stream request; it never panics and always closes done.
func (s *service) runCall(ctx context.Context, c *streamCall) {
	defer close(c.done)
	// As for unary calls: reuse the buffer only after a full answer. This
	// runs after the recovery below has set c.err.
	defer func() { s.codec.release(c.req, c.err == nil) }()
	defer func() {
		if p := recover(); p != nil {
			c.resp, c.err = nil, panicError(s.log, "ModelStreamInfer", p)
		}
	}()
	if c.after != nil {
		select {
		case <-c.after.done:
		case <-ctx.Done():
		}
		c.after = nil
	}
	c.resp, c.err = s.infer(ctx, c.req, c.id, c.start)
}

// answer waits for one call, sends its answer when send is true, and
// reports it to Observe. It returns the send error.
func (s *service) answer(stream inference.GRPCInferenceService_ModelStreamInferServer, c *streamCall, send bool) error {
	<-c.done
	var err error
	if send {
		msg := &inference.ModelStreamInferResponse{InferResponse: c.resp}
		if c.err != nil {
			msg = &inference.ModelStreamInferResponse{
				ErrorMessage: s.cfg.Scrub.Scrub(errorMessage(c.err)),
				// The id lets a client that pipelines match the error to its
				// request without counting.
				InferResponse: &inference.ModelInferResponse{
					ModelName:    c.req.GetModelName(),
					ModelVersion: c.req.GetModelVersion(),
					Id:           c.id,
				},
			}
		}
		err = stream.Send(msg)
	}
	s.observe(c.resp, c.id, c.err, time.Since(c.start))
	return err
}

// unstarted reports a stream request that was read but never started: the
// serving core hears of it once, and Observe counts it.
func (s *service) unstarted(req *inference.ModelInferRequest, id string, why error, start time.Time) {
	sreq := &serving.Request{Model: req.GetModelName(), Version: req.GetModelVersion(), ID: id, Protocol: transport.ProtocolGRPC, Arrival: start}
	s.observe(nil, id, s.inf.Refuse(sreq, why), time.Since(start))
}

// errorMessage is what a stream answer says about a failed request: the
// message of the status the same failure gets from ModelInfer.
func errorMessage(err error) string {
	return status.Convert(transport.GRPCError(err)).Message()
}
