package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/outrigger-mesh/outrigger/proxy/config"
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

// failOnce fails its first write and takes the others.
type failOnce struct{ failed atomic.Bool }

func (w *failOnce) Write(p []byte) (int, error) {
	if w.failed.CompareAndSwap(false, true) {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}

// blockingWriter is a process log whose writes wait for release; each
// write is signalled on writing first.
type blockingWriter struct {
	writing, release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.writing <- struct{}{}
	<-w.release
	return len(p), nil
}

func (w *blockingWriter) Sync() error { return nil }

// The report of a lost line goes to the process log after the access
// log's lock is released: a process log that is slow to take it (standard
// error on a pipe nobody reads) holds back no other request's line. The
// report was written under that lock.
func TestLostLinesReportHoldsNoOtherLine(t *testing.T) {
	plog := &blockingWriter{writing: make(chan struct{}), release: make(chan struct{})}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), plog, zap.InfoLevel))
	a, err := newAccessLog(config.AccessLog{Enabled: true}, &failOnce{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Wrap("outbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	first := make(chan struct{})
	go func() {
		defer close(first)
		serveOne(h, "/lost") // its line fails; the report blocks
	}()
	select {
	case <-plog.writing:
	case <-time.After(10 * time.Second):
		t.Fatal("no report of the lost line")
	}
	second := make(chan struct{})
	go func() {
		defer close(second)
		serveOne(h, "/written")
	}()
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Error("a line waited for the process log's report of another")
	}
	close(plog.release)
	<-first
	<-second
}
