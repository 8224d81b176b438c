// Package testcert owns the made-up certificates that tests of TLS and
// mutual TLS need: throwaway ECDSA certificate authorities, leaf
// certificates they issue for 127.0.0.1 and localhost, client
// configurations that trust them, and files written so that a rewrite is
// noticed.
//
// Only tests may import it: it calls testing.TB.Fatal on failure and its
// keys are generated on the spot, never protected. It knows nothing of the
// server, its flags or how certificates are reloaded.
package testcert
