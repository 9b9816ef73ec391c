package h2client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A server that lowers SETTINGS_MAX_CONCURRENT_STREAMS below the streams
// it already has gets no new stream on that connection once the client
// has acknowledged the change (RFC 9113 §5.1.2, §6.5.3): not even from a
// request that had taken a slot before the SETTINGS arrived. The request
// goes to another connection; the open stream carries on.
func TestLoweredMaxConcurrentStreamsHoldsForRequestsAlreadyPlaced(t *testing.T) {
	lower := make(chan struct{})
	violations := make(chan uint32, 4)
	release := newGate()
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerTheRest("second")
			return
		}
		first, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		<-lower
		rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
		acked := false
		var wmu sync.Mutex // the Framer's writes, from two goroutines
		go func() {
			<-release.ch
			wmu.Lock()
			rc.respond(first.StreamID, "first")
			wmu.Unlock()
		}()
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				acked = acked || f.IsAck()
			case *http2.MetaHeadersFrame:
				if acked {
					violations <- f.StreamID
				}
				wmu.Lock()
				rc.fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
				wmu.Unlock()
			}
		}
	})
	t.Cleanup(release.open)
	tr := newTransport(t)
	firstDone := make(chan outcome, 1)
	firstReq, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/first", nil)
	go func() { firstDone <- fetch(tr, firstReq) }()
	waitFirstStream(t, tr, s.addr)
	c := onlyConn(t, tr, s.addr)
	// The second request has its slot on the first connection when the
	// server lowers the limit.
	ctx := httptrace.WithClientTrace(ctxTimeout(t, 10*time.Second), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if info.Conn != c.nc {
				return
			}
			close(lower)
			eventually(t, "the lowered limit", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.maxStreams == 1
			})
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/second", nil)
	if _, body := do(t, tr, req); body != "second" {
		t.Fatalf("second request got %q", body)
	}
	release.open()
	if got := recv(t, firstDone); got.err != nil || got.body != "first" {
		t.Fatalf("first request got %v", got)
	}
	select {
	case id := <-violations:
		t.Fatalf("stream %d opened beyond the acknowledged limit of 1", id)
	default:
	}
}

// A new connection whose server allows no streams at all fails the
// request that dialled it and is closed, not kept: it has no stream to
// end and no idle timer, so each such request would otherwise leave one
// more connection open for good.
func TestConnectionAllowingNoStreamsIsNotKept(t *testing.T) {
	var open atomic.Int32
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}, func(rc *rawConn, n int) {
		open.Add(1)
		defer open.Add(-1)
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	for range 3 {
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
		if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "takes no stream") {
			t.Fatalf("err = %v", err)
		}
	}
	if n := s.accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want one per request", n)
	}
	eventually(t, "the connections to close", func() bool { return open.Load() == 0 })
	tr.mu.Lock()
	hosts := len(tr.hosts)
	tr.mu.Unlock()
	if hosts != 0 {
		t.Fatalf("%d hosts still listed", hosts)
	}
}

// A request cancelled while its body waits for flow-control window is
// reset with CANCEL, its body is closed, and its stream slot is free at
// once: with SETTINGS_MAX_CONCURRENT_STREAMS 1 the next request takes
// the same connection.
func TestCancelMidBodyFreesTheSlot(t *testing.T) {
	rst := make(chan http2.ErrCode, 1)
	s := startRaw(t, []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: 1},
		{ID: http2.SettingInitialWindowSize, Val: 10},
	}, func(rc *rawConn, n int) {
		for {
			f, err := rc.readUntil(func(f http2.Frame) bool {
				switch f.(type) {
				case *http2.MetaHeadersFrame, *http2.RSTStreamFrame:
					return true
				}
				return false
			})
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				rst <- f.ErrCode
			case *http2.MetaHeadersFrame:
				if f.PseudoValue("path") == "/next" {
					rc.respond(f.StreamID, "next")
				}
			}
		}
	})
	tr := newTransport(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.addr+"/upload", pr)
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	if _, err := pw.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	c := onlyConn(t, tr, s.addr)
	eventually(t, "the body to wait for window", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.streams[1]
		return s != nil && s.sendWindow == 0
	})
	cancel()
	if err := recv(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if code := recv(t, rst); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
	eventuallyPipeClosed(t, "the body to be closed", pw)
	if _, body := get(t, tr, "http://"+s.addr+"/next"); body != "next" {
		t.Fatalf("body %q", body)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want the slot reused", n)
	}
}
