// Package quality is the model-quality loop: a serving tap that keeps
// each monitored model's predictions (sampled by request id) in an
// embedded, crash-safe store, the feedback join that brings ground truth
// back by request id, the per-version quality counters Prometheus
// aggregates across replicas, and the windowed report (accuracy,
// per-class precision, recall and F1, macro F1, confusion matrix, ROC-AUC,
// MAE, RMSE).
//
// It reads models through its own Resolver and answered requests through
// serving.Tap; it knows nothing of wire formats (the front ends decode
// feedback into Items and encode Results and Reports) nor of config.yaml
// (cmd/serve turns the monitoring block into a Spec). The store is bbolt;
// STORE.md records why.
package quality
