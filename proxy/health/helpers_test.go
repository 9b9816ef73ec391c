package health

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// startChecker builds and starts a Checker that the test closes at its end.
func startChecker(t *testing.T, cfg Config, addrs []string, opts ...Option) *Checker {
	t.Helper()
	c := newChecker(t, cfg, addrs, opts...)
	c.Start()
	return c
}

// newChecker builds a Checker that the test closes at its end.
func newChecker(t *testing.T, cfg Config, addrs []string, opts ...Option) *Checker {
	t.Helper()
	c, err := New(cfg, addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// checkNow runs one check of endpoint i on the calling goroutine, as the
// endpoint's goroutine would, and returns its error.
func checkNow(t *testing.T, c *Checker, i int) error {
	t.Helper()
	_, ok, err := c.step(context.Background(), i, time.Now())
	if !ok {
		t.Fatal("check cut short")
	}
	return err
}

// causeOf is the Cause and Reason of a check error ("", "" for nil).
func causeOf(t *testing.T, err error) (Cause, string) {
	t.Helper()
	if err == nil {
		return "", ""
	}
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("check error %T %v is not a *CheckError", err, err)
	}
	return ce.Cause, ce.Reason
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// transitions records what the transition hook is given.
type transitions struct {
	mu  sync.Mutex
	got []Transition
}

func (l *transitions) option() Option {
	return WithTransitionHook(func(tr Transition) {
		l.mu.Lock()
		l.got = append(l.got, tr)
		l.mu.Unlock()
	})
}

func (l *transitions) list() []Transition {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Transition(nil), l.got...)
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// listenAgain listens on addr again after its listener was closed,
// retrying briefly while the port is still in use.
func listenAgain(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	waitFor(t, "listening again on "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	return ln
}

// fastConfig is a config for checks against real peers: short interval,
// thresholds of one.
func fastConfig(k Kind) Config {
	return Config{Kind: k, Interval: 10 * time.Millisecond, Timeout: 2 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
}
