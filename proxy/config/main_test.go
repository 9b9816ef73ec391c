package config

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The node id defaults to the host name; a fixed one keeps golden
	// output the same on every machine.
	hostname = func() (string, error) { return "test-host", nil }
	goleak.VerifyTestMain(m)
	os.Exit(0)
}
