//go:build race

package main

// raceEnabled builds the binary under test with the race detector too, so
// that the real process is checked, not only the test's own code.
const raceEnabled = true
