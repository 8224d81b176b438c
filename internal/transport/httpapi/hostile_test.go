package httpapi

import (
	"strings"
	"testing"
)

// TestErrorsClipClientStrings: an error that names what the client sent
// does not send a huge name back whole.
func TestErrorsClipClientStrings(t *testing.T) {
	e := newEnv(t, Config{})
	long := strings.Repeat("N", 70_000)
	for _, tc := range []struct{ name, body, msg string }{
		{"unknown input", `{"inputs":[{"name":"` + long + `","shape":[1],"datatype":"INT32","data":[1]}]}`, `unknown input "NNNN`},
		{"unknown output", simpleRequest(`"outputs":[{"name":"` + long + `"}],`), `unknown output "NNNN`},
		{"bad datatype", `{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"` + long + `","data":[1]}]}`, `NNNN`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, "/v2/models/simple/infer", tc.body)
			wantError(t, r, 400, tc.msg)
			if len(r.body) > 1024 {
				t.Fatalf("the error document is %d bytes: the client's string came back whole", len(r.body))
			}
		})
	}
}
