package httpapi

import (
	"errors"
	"io"

	"github.com/valyala/fasthttp"
)

// firstBodyChunk is the most a request body gets before its bytes have
// arrived: its buffer then doubles as they come, up to the declared
// Content-Length, so a client that declares 64 MiB and sends nothing costs
// this much, not 64 MiB.
const firstBodyChunk = 64 << 10

// headerBodyTooLarge marks, from headerReceived to takeBody, a request
// whose declared body exceeds Config.MaxRequestBodySize: its head is
// answered 413 without waiting for any of the body, which fasthttp would
// otherwise start to read before the handler runs. The hook removes any
// such header a client sends.
const headerBodyTooLarge = "X-Onnxserve-Body-Too-Large"

// takeBody reads the request's body, which fasthttp streams
// (StreamRequestBody) instead of reserving its whole Content-Length up
// front, into memory in proportion to what has arrived. Each growth of the
// buffer is charged to Config.Budget before it is allocated; charged is
// the total, which the caller refunds once the request is answered, also
// when takeBody fails. The body is then the request's, so handlers read it
// with PostBody as before. A POST that lacks its inference token is not
// read at all: it is answered 401 and its connection closed. A body over
// Config.MaxRequestBodySize fails with fasthttp.ErrBodyTooLarge, from its
// declared length before anything is read when it has one.
func (s *Server) takeBody(ctx *fasthttp.RequestCtx) (charged int64, err error) {
	if len(ctx.Request.Header.Peek(headerBodyTooLarge)) > 0 {
		return 0, fasthttp.ErrBodyTooLarge
	}
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return 0, nil
	}
	if s.unauthenticatedBody(&ctx.Request.Header) {
		ctx.SetConnectionClose() // the unread body ends the connection
		return 0, nil
	}
	declared := ctx.Request.Header.ContentLength() // -1: chunked
	limit := s.cfg.MaxRequestBodySize
	if declared > limit {
		return 0, fasthttp.ErrBodyTooLarge
	}
	if declared == 0 {
		ctx.Request.SetBodyRaw(nil)
		return 0, nil
	}
	if lc := asLingerConn(ctx.Conn()); lc != nil {
		// The body is still arriving: shutdown may cut off this upload
		// as it would one fasthttp reads (shutdown.go).
		lc.phase.Store(phaseReading)
		defer lc.phase.Store(phaseAnswering)
	}
	most := limit + 1 // a chunked body one byte over is over
	if declared > 0 {
		most = declared
	}
	grow := func(buf []byte) ([]byte, error) {
		size := max(min(2*cap(buf), most), min(firstBodyChunk, most))
		if err := s.cfg.Budget.Charge(int64(size - cap(buf))); err != nil {
			return buf, err
		}
		charged += int64(size - cap(buf))
		next := make([]byte, len(buf), size)
		copy(next, buf)
		return next, nil
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if len(buf) == most {
				if declared < 0 {
					return charged, fasthttp.ErrBodyTooLarge
				}
				break
			}
			if buf, err = grow(buf); err != nil {
				return charged, err
			}
		}
		n, rerr := stream.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return charged, rerr
		}
	}
	if declared > 0 && len(buf) < declared {
		return charged, io.ErrUnexpectedEOF
	}
	ctx.Request.SetBodyRaw(buf)
	return charged, nil
}

// refuseBody answers a request whose body takeBody could not take, as
// fasthttp's errors are answered (handleProtocolError), and closes the
// connection after a graceful close: the rest of the body may still be on
// its way.
func (s *Server) refuseBody(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	lingerOnClose(ctx.Conn())
	s.handleProtocolError(ctx, err)
}

// jsonExpansion bounds the bytes of tensors decoding makes of one byte of
// JSON: an 8-byte element takes at least two ("0,"), and a BYTES element's
// layout (4 bytes of length and its bytes, in a buffer that grows by
// doubling) at most 8/3 of its three or more ("\"\",").
const jsonExpansion = 4

// chargeDecode charges the budget, before an inference body is decoded,
// for the tensors decoding makes of it: jsonExpansion times its JSON part
// and once its binary part (binary tensor extension; headerLen < 0 for
// none), which is copied. It returns what it charged, for the caller to
// refund once the request is answered.
func (s *Server) chargeDecode(body []byte, headerLen int) (int64, error) {
	jsonLen := len(body)
	if headerLen >= 0 && headerLen <= len(body) {
		jsonLen = headerLen
	}
	n := int64(jsonExpansion*jsonLen + len(body) - jsonLen)
	if err := s.cfg.Budget.Charge(n); err != nil {
		return 0, err
	}
	return n, nil
}
