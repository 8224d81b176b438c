// Package jsonscan reads JSON documents without reflection and without
// allocating: a Scanner that the caller drives value by value (objects,
// arrays, strings, booleans, integers, skipping what it does not want) and
// a number parser that reads a number token and its decimal value in one
// pass and converts it to float32 or float64 exactly as strconv would,
// falling back to strconv only where a fast conversion cannot be proved
// right.
//
// It exists for the HTTP front end's inference requests, whose cost is
// almost all in long arrays of numbers: decoding them with encoding/json
// costs reflection, an interface per element or a second pass, and an
// allocation per value. The benchmark that justifies it, and its figures,
// are below.
//
// # Measured
//
// BenchmarkDecodeVsEncodingJSON (httpapi's stdjson_test.go) decodes the
// same request bodies into the same tensors (a test checks they are equal)
// with the server's decoder, built on this package, and with
// encoding/json into declared structs and typed slices:
//
//	request                          decoder          time/op  bytes/op  allocs/op
//	simple: 2 × INT32 [1,16]         jsonscan         1.83 µs     520 B         13
//	  (276 bytes)                    encoding/json    13.6 µs    1776 B         42   7.5× the time
//	PaddleOCR: FP32 [1,3,48,192]     jsonscan          435 µs    115 KB          3
//	  (295 KB, shortest float32)     encoding/json    5.88 ms    912 KB         40  13.5× the time
//
// Medians of 6 runs, on an "AMD EPYC" (lscpu model name) virtual machine
// with 2 cores, shared and busy (load average near 7: encoding/json's runs
// spread from 9.9 to 16.4 µs and 5.6 to 8.4 ms), Go 1.26.8, linux/amd64,
// at commit 8669fac, the test binary pinned to one core:
//
//	go test -c -o /tmp/httpapi.test ./internal/transport/httpapi
//	cd internal/transport/httpapi && taskset -c 1 /tmp/httpapi.test \
//	    -test.run '^$' -test.bench BenchmarkDecodeVsEncodingJSON -test.count 6 -test.benchtime 1s
//
// It validates everything it reads, including the values it skips, bounds
// nesting, and never panics on hostile input (a fuzz target checks it
// against encoding/json). It knows nothing of tensors, the v2 protocol or
// HTTP, and imports no package of this module: its errors wrap ErrSyntax
// (a malformed document) or ErrType (a well-formed value of the wrong
// kind), and the caller words and classifies them.
package jsonscan
