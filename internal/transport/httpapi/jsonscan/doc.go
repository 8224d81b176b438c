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
// It validates everything it reads, including the values it skips, bounds
// nesting, and never panics on hostile input (a fuzz target checks it
// against encoding/json). It knows nothing of tensors, the v2 protocol or
// HTTP, and imports no package of this module: its errors wrap ErrSyntax
// (a malformed document) or ErrType (a well-formed value of the wrong
// kind), and the caller words and classifies them.
package jsonscan
