package score

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine of the
// pipeline running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
