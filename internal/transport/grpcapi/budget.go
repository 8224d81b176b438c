package grpcapi

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Field numbers the cost estimate walks, from proto/inference.proto.
const (
	fieldInputContents protowire.Number = 5 // InferInputTensor.contents
	fieldBoolContents  protowire.Number = 1 // InferTensorContents.bool_contents ...
	fieldFP32Contents  protowire.Number = 6
	fieldFP64Contents  protowire.Number = 7
	fieldBytesContents protowire.Number = 8 // ... bytes_contents
)

// goSize is the size of one element of each InferTensorContents field in
// the decoded Go message, by field number; bytes_contents's is a slice
// header.
var goSize = [...]int64{fieldBoolContents: 1, 2: 4, 3: 8, 4: 4, 5: 8, fieldFP32Contents: 4, fieldFP64Contents: 8, fieldBytesContents: 24}

// decodeCost returns what decoding the ModelInferRequest b costs in
// memory beyond b itself, read from the wire before anything is decoded:
// each element of the inputs' typed contents costs its Go size in the
// decoded message (twice over for bytes_contents, whose slice grows by
// doubling) plus its size in the tensor built from it (at most its Go
// size; 4 bytes of length prefix for a BYTES element), and a BYTES
// element's bytes are copied twice. So the budget is charged for the
// whole decoded request, whose size the wire does not show: 33 million
// empty bytes_contents are 66 MB on the wire and 1.7 GB decoded. The
// element count of each input's contents is checked against
// lim.MaxTensorElements (lim has its defaults) on the way, before protobuf allocates for them.
// Malformed wire data costs what was counted so far; protobuf reports it.
func decodeCost(b []byte, lim guard.Limits) (int64, error) {
	var cost int64
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldInputs || typ != protowire.BytesType {
			return nil
		}
		var name []byte
		var elements int64
		err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num == fieldTensorName && typ == protowire.BytesType {
				name = v
			}
			if num != fieldInputContents || typ != protowire.BytesType {
				return nil
			}
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num < fieldBoolContents || num > fieldBytesContents {
					return nil
				}
				n := int64(1)
				switch {
				case num == fieldBytesContents:
					cost += 2*goSize[num] + 4 + 2*int64(len(v))
				case typ != protowire.BytesType: // one unpacked element
					cost += 2 * goSize[num]
				default: // packed
					switch num {
					case fieldFP32Contents:
						n = int64(len(v) / 4)
					case fieldFP64Contents:
						n = int64(len(v) / 8)
					default:
						n = 0
						for _, c := range v {
							if c < 0x80 {
								n++
							}
						}
					}
					cost += 2 * goSize[num] * n
				}
				if elements += n; elements > lim.MaxTensorElements {
					return lim.CheckElements(string(name), elements)
				}
				return nil
			})
		})
		return err
	})
	return cost, err
}

// eachField calls f with each field of the protobuf message b (a
// length-delimited field's contents as v), stopping at f's first error or
// at malformed data.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil
		}
		var v []byte
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(b[n:])
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// charges remembers what each decoded request was charged to the budget,
// until release refunds it. Keys are weak and every entry has a cleanup, so
// a request dropped without release is refunded when it is collected.
// Safe for concurrent use.
type charges struct {
	budget *guard.Budget
	mu     sync.Mutex
	m      map[weak.Pointer[inference.ModelInferRequest]]charge
}

type charge struct {
	n       int64
	cleanup runtime.Cleanup
}

// take charges n bytes for req, or fails as Budget.Charge does.
func (c *charges) take(req *inference.ModelInferRequest, n int64) error {
	if c.budget == nil || n <= 0 {
		return nil
	}
	if err := c.budget.Charge(n); err != nil {
		return err
	}
	key := weak.Make(req)
	ch := charge{n: n, cleanup: runtime.AddCleanup(req, c.collected, key)}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[weak.Pointer[inference.ModelInferRequest]]charge{}
	}
	if old, ok := c.m[key]; ok { // a message decoded again
		old.cleanup.Stop()
		c.budget.Refund(old.n)
	}
	c.m[key] = ch
	c.mu.Unlock()
	return nil
}

// refund gives back req's charge, if it has one.
func (c *charges) refund(req *inference.ModelInferRequest) {
	if c.budget == nil || req == nil {
		return
	}
	key := weak.Make(req)
	c.mu.Lock()
	ch, ok := c.m[key]
	delete(c.m, key)
	c.mu.Unlock()
	if ok {
		ch.cleanup.Stop()
		c.budget.Refund(ch.n)
	}
}

// collected refunds the charge of a request collected without release.
func (c *charges) collected(key weak.Pointer[inference.ModelInferRequest]) {
	c.mu.Lock()
	ch, ok := c.m[key]
	delete(c.m, key)
	c.mu.Unlock()
	if ok {
		c.budget.Refund(ch.n)
	}
}

// retryPushback is the trailer of a call refused over the memory budget:
// gRPC's counterpart of HTTP's Retry-After, which grpc-go clients with a
// retry policy honour.
const retryPushback = "grpc-retry-pushback-ms"

// retryLater asks the client of a call refused over the memory budget to
// retry after a second.
func retryLater(ctx context.Context, err error) {
	if err != nil && errors.Is(err, transport.ErrMemoryBudget) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(retryPushback, "1000"))
	}
}

// statusError is err as its status from the transport table, still
// wrapping err so that errors.Is sees what it was.
type statusError struct{ err error }

func (e statusError) Error() string { return e.err.Error() }
func (e statusError) Unwrap() error { return e.err }

// GRPCStatus is what grpc-go answers the call with.
func (e statusError) GRPCStatus() *status.Status {
	return status.Convert(transport.GRPCError(e.err))
}
