package serving

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/onnxserve/onnxserve/internal/repository"
)

// DesiredFromRepository turns one scanned model folder into the state Apply
// should reach: the versions its policy selects, plus any version the policy
// would select that cannot be loaded (reported UNAVAILABLE with its reason).
func DesiredFromRepository(m repository.Model) Desired {
	d := Desired{Name: m.Name, Config: m.Config, ConfigErr: m.Err, ConfigHash: servingHash(m.Config)}
	all := make([]int64, 0, len(m.Versions))
	for _, v := range m.Versions {
		all = append(all, v.Number)
	}
	wanted := m.Selected
	if m.Err == nil {
		// Broken versions the policy would pick are listed, not hidden.
		wanted = m.Config.VersionPolicy.Select(all)
	}
	for _, v := range m.Versions {
		if !slices.Contains(wanted, v.Number) && !slices.Contains(m.Selected, v.Number) {
			continue
		}
		if v.Err == nil && !slices.Contains(m.Selected, v.Number) {
			continue
		}
		d.Versions = append(d.Versions, DesiredVersion{
			Number:      v.Number,
			Path:        v.Path,
			Fingerprint: fmt.Sprintf("%d:%d", v.Fingerprint.Size, v.Fingerprint.ModTime.UnixNano()),
			Err:         v.Err,
		})
	}
	return d
}

// servingHash fingerprints the parts of a config that shape a loaded
// version. The traffic block is left out: changing a split re-routes, it
// never reloads a session; so is the check block, which only `onnxserve
// check` reads.
func servingHash(c repository.Config) string {
	c.Traffic = nil
	c.Rollout = nil // a policy moves traffic; it never reloads a session
	c.Check = nil
	if c.PayloadLog != nil {
		// Sampling is read per request through OnConfig; only the redact
		// list, checked against the model's inputs at load, reloads.
		c.PayloadLog = &repository.PayloadLog{Redact: c.PayloadLog.Redact}
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Config holds only plain data; this cannot fail, but a unique
		// value keeps a reload safe if it ever does.
		return fmt.Sprintf("unhashable-%p", &c)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// DesiredFromSnapshot converts a whole repository scan.
func DesiredFromSnapshot(s repository.Snapshot) []Desired {
	out := make([]Desired, 0, len(s.Models))
	for _, m := range s.Models {
		out = append(out, DesiredFromRepository(m))
	}
	return out
}
