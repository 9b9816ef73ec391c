package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// An access log on a full disk: no line of zap's own on standard error
// per request (there was one per lost line), and one line on the process
// log that says lines are lost.
func TestAccessLogOnAFullDiskSaysSoOnceNotPerRequest(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	up := newUpstream(t, "a")
	extra := "logging:\n  access_log:\n    enabled: true\n    path: /dev/full\n"
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), "", extra)))
	c := newClient(t)
	const requests = 30
	for range requests {
		if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 {
			t.Fatalf("request: %d %s", code, body)
		}
	}
	waitFor(t, 10*time.Second, "the report of lost lines", func() bool {
		return strings.Contains(p.stderr.String(), "access log lines lost")
	})
	stderr := p.stderr.String()
	if n := strings.Count(stderr, "write error"); n != 0 {
		t.Errorf("standard error has %d lines of zap's own for the failed writes, want none", n)
	}
	if n := strings.Count(stderr, "access log lines lost"); n != 1 {
		t.Errorf("standard error reports lost lines %d times for %d requests within %v, want once", n, requests, lostLinesEvery)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "access log lines lost") && (!strings.HasPrefix(l, "{") || !strings.Contains(l, "no space left on device")) {
			t.Errorf("the report is not a process log line with the cause: %s", l)
		}
	}
}

// Lost lines are reported at most once per lostLinesEvery, each report
// counting the lines lost since the previous one; the first line written
// after a loss reports what was still unreported.
func TestLostLinesReportsAtMostOncePerPeriod(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	now := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	l := &lostLines{log: zap.New(core), now: func() time.Time { return now }}
	full := errors.New("no space left on device")
	reports := func() string {
		var s []string
		for _, e := range logs.TakeAll() {
			s = append(s, fmt.Sprintf("%s lost=%d", e.Message, e.ContextMap()["lost"]))
		}
		return strings.Join(s, "; ")
	}
	l.done(nil)
	if got := reports(); got != "" {
		t.Fatalf("a written line reported %q", got)
	}
	l.done(full)
	if got := reports(); got != "access log lines lost lost=1" {
		t.Fatalf("first loss: %q", got)
	}
	for range 5 {
		now = now.Add(time.Second)
		l.done(full)
	}
	if got := reports(); got != "" {
		t.Fatalf("losses within the period reported %q", got)
	}
	now = now.Add(lostLinesEvery)
	l.done(full)
	if got := reports(); got != "access log lines lost lost=6" {
		t.Fatalf("a loss after the period: %q", got)
	}
	now = now.Add(time.Second)
	l.done(full)
	l.done(nil) // within the period: kept for later
	if got := reports(); got != "" {
		t.Fatalf("within the period: %q", got)
	}
	now = now.Add(lostLinesEvery)
	l.done(nil)
	l.done(nil)
	if got := reports(); got != "access log written again lost=1" {
		t.Fatalf("written again: %q", got)
	}
}
