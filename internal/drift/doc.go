// Package drift owns data validation and drift detection per model version:
// reference profiles (profile.json, or one learned from the first rows after
// load), validation rules that run on the request path and may reject, and
// windowed drift statistics (binned PSI, Jensen–Shannon distance and
// Kolmogorov–Smirnov) that run on its tap's goroutine.
//
// It is a tap on the serving core (DESIGN §3): it imports serving and
// tensor, never a transport, and knows nothing of wire formats. cmd/serve
// registers it as a tap and as the server's version hook.
package drift
