package serving

import "github.com/onnxserve/onnxserve/internal/repository"

// ModelConfig returns a copy of the config.yaml a model was last applied
// with (the last valid one when a later file was rejected). An unknown
// model wraps
// ErrModelNotFound. Safe for concurrent use; it takes the model's
// management lock, so callers cache what they read.
func (s *Server) ModelConfig(name string) (repository.Config, error) {
	m, err := s.model(name)
	if err != nil {
		return repository.Config{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Clone(), nil
}
