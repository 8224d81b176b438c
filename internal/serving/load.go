package serving

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/onnxserve/onnxserve/internal/repository"
)

// ControlMode says who decides which models are loaded.
type ControlMode string

// The model control modes, as Triton names them.
const (
	// ModePoll follows the repository folder: what is on disk serves.
	ModePoll ControlMode = "poll"
	// ModeExplicit loads and unloads only on API calls (and --load-model).
	ModeExplicit ControlMode = "explicit"
)

// ErrInvalidConfig marks a rejected config.yaml or config override.
var ErrInvalidConfig = repository.ErrInvalidConfig

// ErrWrongMode marks a load or unload call in poll mode, where the folder
// alone decides what serves.
var ErrWrongMode = fmt.Errorf("%w: model load and unload need --model-control-mode explicit", ErrInvalidConfig)

// LoadModel (re)loads one model from the repository, optionally with a
// config override (config.yaml text; JSON is YAML too) validated exactly like
// a file. It returns once the model has a READY version or failed.
func (s *Server) LoadModel(ctx context.Context, name string, override []byte) error {
	if s.cfg.Mode != ModeExplicit {
		return ErrWrongMode
	}
	m, err := repository.ScanModel(s.cfg.Root, name)
	if err != nil {
		if errors.Is(err, repository.ErrModelNotFound) || errors.Is(err, repository.ErrInvalidModelName) {
			return fmt.Errorf("model %q: %w", name, ErrModelNotFound)
		}
		return fmt.Errorf("model %q: %w", name, err)
	}
	if override != nil {
		cfg, err := repository.ParseConfig(override)
		if err != nil {
			return fmt.Errorf("model %q: config override: %w", name, err)
		}
		applyOverride(&m, cfg, sha256.Sum256(override))
	}
	return s.ApplyModel(ctx, DesiredFromRepository(m))
}

// UnloadModel retires every version of a model (explicit mode only).
func (s *Server) UnloadModel(name string) error {
	if s.cfg.Mode != ModeExplicit {
		return ErrWrongMode
	}
	return s.Unload(name)
}

// applyOverride replaces a scanned model's config, recomputing what its
// policy selects and the fingerprints that depend on the config.
func applyOverride(m *repository.Model, cfg repository.Config, hash [sha256.Size]byte) {
	m.Config, m.Err, m.ConfigHash = cfg, nil, hash
	var ok []int64
	for i := range m.Versions {
		m.Versions[i].Fingerprint.ConfigHash = hash
		if m.Versions[i].Err == nil {
			ok = append(ok, m.Versions[i].Number)
		}
	}
	m.Selected = cfg.VersionPolicy.Select(ok)
}
