package main

import (
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// stack builds a sample from function names, the leaf first; a name with
// '+' joins frames inlined into one location, the innermost first.
func stack(names ...string) *profile.Sample {
	s := &profile.Sample{}
	for _, n := range names {
		loc := &profile.Location{}
		for _, f := range strings.Split(n, "+") {
			if f != "" {
				loc.Line = append(loc.Line, profile.Line{Function: &profile.Function{Name: f}})
			}
		}
		s.Location = append(s.Location, loc)
	}
	return s
}

func TestCategorize(t *testing.T) {
	const httpapi = "github.com/onnxserve/onnxserve/internal/transport/httpapi."
	const grpcapi = "github.com/onnxserve/onnxserve/internal/transport/grpcapi."
	cases := []struct {
		s    *profile.Sample
		want string
	}{
		{stack("runtime.cgocall", "github.com/onnxserve/onnxserve/internal/runtime.(*Session).Run"), "ONNX Runtime (sampled)"},
		{stack("", "runtime._ExternalCode"), "ONNX Runtime (sampled)"},
		{stack(""), "ONNX Runtime (sampled)"},
		{stack("runtime.memclrNoHeapPointers", "runtime.mallocgc", "google.golang.org/protobuf/internal/impl.consumeBytesSlice"), "memory allocation"},
		{stack("internal/runtime/syscall/linux.Syscall6", "syscall.read", "google.golang.org/grpc/internal/transport.(*framer).readFrame"), "socket reads and writes"},
		{stack("runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"), "garbage collection"},
		{stack("google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshalPointer", grpcapi+"(*codec).Unmarshal"), "protobuf"},
		// Our code called by gRPC is ours; a memmove counts as its caller.
		{stack("runtime.memmove", grpcapi+"decodeInputs", "google.golang.org/grpc.(*Server).processUnaryRPC"), "onnxserve front ends"},
		{stack(httpapi+"eightDigits+"+httpapi+"leadingDigits+"+httpapi+"digitRun", httpapi+"(*dataParser).floatRun"), "JSON decoding"},
		{stack("encoding/binary.littleEndian.AppendUint32+"+httpapi+"(*dataParser).floatRun", "github.com/valyala/fasthttp.(*Server).serveConn"), "JSON decoding"},
		{stack("google.golang.org/grpc/internal/transport.(*loopyWriter).processData"), "gRPC and HTTP/2"},
		{stack("runtime.findRunnable", "runtime.schedule"), "Go scheduler, timers and metrics"},
		{stack("strings.Index"), otherCosts},
	}
	for _, c := range cases {
		if got := categorize(c.s); got != c.want {
			t.Errorf("%v: %q, want %q", c.s.Location[0].Line, got, c.want)
		}
	}
}

func TestCostsMarkdown(t *testing.T) {
	md := costsMarkdown([]costProfile{
		{Model: "simple", Protocol: "grpc", ServerMicros: 20, RawMicros: 1.5, Shares: []costShare{{"protobuf", 4}, {"memory allocation", 3}}},
		{Model: "ocr_cls", Protocol: "grpc", ServerMicros: 760, RawMicros: 640, Shares: []costShare{{"memory allocation", 10}}},
	})
	for _, want := range []string{
		"| µs per inference | simple over grpc | ocr_cls over grpc |",
		"| **beyond ONNX Runtime** | **18.5** | **120.0** |",
		// Rows by their total: allocation (13) before protobuf (4).
		"| &nbsp;&nbsp;memory allocation | 3.0 | 10.0 |\n| &nbsp;&nbsp;protobuf | 4.0 | – |",
		"(kernel, ONNX Runtime slowed by sharing its core) | 11.5 | 110.0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

func TestCostsMarkdownWithoutRaw(t *testing.T) {
	md := costsMarkdown([]costProfile{{Model: "simple", Protocol: "grpc", ServerMicros: 20, Shares: []costShare{{"protobuf", 4}}}})
	if strings.Contains(md, "beyond ONNX Runtime") || strings.Contains(md, "not in the Go profile") {
		t.Fatalf("rows that need the raw baseline shown without it:\n%s", md)
	}
	if !strings.Contains(md, "| &nbsp;&nbsp;protobuf | 4.0 |") {
		t.Fatalf("table lacks its share:\n%s", md)
	}
}
