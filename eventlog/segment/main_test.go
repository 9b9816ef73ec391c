package segment

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		// Re-executed as the crash test's child: run only the child body.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
