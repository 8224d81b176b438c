package main

import (
	"encoding/json"

	"github.com/onnxserve/onnxserve/internal/payloadlog"
	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi"
)

// loggedFeedback is the quality loop as the front ends use it, with
// accepted feedback written to the payload log too (its own event type,
// under the request's id), so every sink can join ground truth to the
// requests it logged. Report passes through.
type loggedFeedback struct {
	*quality.Monitor
	plog *payloadlog.Logger
}

// Feedback hands items to the quality loop, then logs each one it
// accepted: matched, and also unknown or expired in the loop's store,
// whose request the payload log may still hold. Invalid items and
// duplicates (the first ground truth wins, in both) are not logged.
func (f loggedFeedback) Feedback(model string, items []quality.Item) ([]quality.Result, error) {
	res, err := f.Monitor.Feedback(model, items)
	if err != nil {
		return res, err
	}
	for i, r := range res {
		switch r.Result {
		case quality.ResultMatched, quality.ResultUnknownID, quality.ResultExpired:
		default:
			continue
		}
		version := items[i].Version
		if len(r.Versions) > 0 {
			version = r.Versions[0]
		}
		f.plog.LogFeedback(model, version, items[i].ID, truthJSON(items[i].Truth))
	}
	return res, nil
}

// truthJSON writes ground truth as a JSON array: numbers, or strings for
// labels.
func truthJSON(vs []quality.Value) json.RawMessage {
	out := make([]any, len(vs))
	for i, v := range vs {
		if v.IsStr {
			out[i] = v.Str
		} else {
			out[i] = v.Num
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		// NaN or an infinity: JSON cannot spell them; no row is lost
		// from the request, only this ground truth.
		return nil
	}
	return b
}

// qualityBackend is the quality loop as the front ends use it: mon itself,
// or mon with accepted feedback logged when the payload log is on.
func qualityBackend(mon *quality.Monitor, pl *payloadlog.Logger) httpapi.Quality {
	if pl == nil {
		return mon
	}
	return loggedFeedback{Monitor: mon, plog: pl}
}
