package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// batchSizes is the server's own measurement of a model served with an
// auto batch size, as its statistics report it (batch_sizes).
type batchSizes struct {
	Chosen  int               `json:"chosen"`
	TookNS  int64             `json:"took_ns"`
	Timings []batchSizeTiming `json:"timings"`
}

// batchSizeTiming is one batch size the server timed; Runs 0 means the
// measurement's time ran out before it.
type batchSizeTiming struct {
	BatchSize      int     `json:"batch_size"`
	Runs           int     `json:"runs"`
	NSPerRun       int64   `json:"ns_per_run"`
	ItemsPerSecond float64 `json:"items_per_second"`
}

// batchSizes asks the server's statistics for model's batch size
// measurement; nil when the model's batch size was configured.
func (e *env) batchSizes(ctx context.Context, model string) (*batchSizes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.srv.http+"/v2/models/"+url.PathEscape(model)+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("statistics of %s: %w", model, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("statistics of %s: %s", model, resp.Status)
	}
	var doc struct {
		ModelStats []struct {
			BatchSizes *batchSizes `json:"batch_sizes"`
		} `json:"model_stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("statistics of %s: %w", model, err)
	}
	if len(doc.ModelStats) == 0 {
		return nil, nil
	}
	return doc.ModelStats[0].BatchSizes, nil
}
