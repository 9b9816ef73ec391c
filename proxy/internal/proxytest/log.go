package proxytest

import (
	"strings"
	"sync"
)

// Log keeps what a server logs, for the test to read. Its Log method is
// a server's ErrorLog.
type Log struct {
	mu    sync.Mutex
	lines []string
}

// Log records msg and err as one line, "msg: err" (msg alone for a nil
// err).
func (l *Log) Log(msg string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		msg += ": " + err.Error()
	}
	l.lines = append(l.lines, msg)
}

// String is the lines logged so far, one per line.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
