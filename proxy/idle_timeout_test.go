package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	grpc_testing "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A route's idle_timeout ends a request no bytes moved for in either
// direction, on a route with no timeout at all (the long-lived streams
// it is for): before the response, with 408 stream_idle_timeout; after
// it started, by cutting the response (a gRPC call ends with
// DEADLINE_EXCEEDED trailers). Bytes moving either way keep it alive.

// idleTimeout is the idle timeout of the tests that wait for it to pass
// with nothing to move before it does (a stalled body), and nothing
// that must reach the upstream first.
const idleTimeout = 300 * time.Millisecond

// movingIdleTimeout is the idle timeout of the tests in which bytes
// must move before it passes: more often than it, for longer than it,
// or once (the first part of a response, a gRPC exchange, the first
// attempt, the request the upstream is to see end) before it is let
// pass. Their gaps leave most of it spare: a machine running the race
// detector and several test binaries on two cores holds a goroutine up
// for hundreds of milliseconds at times, and with 300 ms and gaps of 25
// to 200 ms such a stall ended streams that were moving (408, a cut
// body, DEADLINE_EXCEEDED); a first part that came more than 300 ms
// after the request was answered 408 in its place, and a request that
// reached the upstream later than that never did.
const movingIdleTimeout = time.Second

func idleRoute(r *config.Route) {
	r.TimeoutDisabled = true
	r.IdleTimeout = idleTimeout
}

func movingIdleRoute(r *config.Route) {
	r.TimeoutDisabled = true
	r.IdleTimeout = movingIdleTimeout
}

// checkIdleElapsed fails unless d is about the idle timeout.
func checkIdleElapsed(t *testing.T, d time.Duration) {
	t.Helper()
	checkElapsedAbout(t, d, idleTimeout)
}

// checkElapsedAbout fails unless d is about the idle timeout idle.
func checkElapsedAbout(t *testing.T, d, idle time.Duration) {
	t.Helper()
	if d < idle || d > 10*time.Second {
		t.Fatalf("ended after %v, want about the idle timeout %v", d, idle)
	}
}

// A silent upstream: 408, and the upstream sees its request end. The
// request must reach the upstream before the idle timeout, which on a
// loaded machine it could do after 300 ms (the connection to it not
// made yet), the upstream then never seeing it.
func TestIdleTimeoutAnswersSilentUpstream(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, client := range []string{"h1", "h2c"} {
			t.Run(string(proto)+"/"+client, func(t *testing.T) {
				ended := make(chan struct{})
				up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
					<-r.Context().Done() // never answers
					close(ended)
				})
				h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, movingIdleRoute))
				c := h.client(client)
				start := time.Now()
				resp := mustGet(t, c, h.url("/slow"))
				body := readAll(t, resp)
				checkElapsedAbout(t, time.Since(start), movingIdleTimeout)
				if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(hdrError) != "stream_idle_timeout" {
					t.Fatalf("got %d %q %q, want 408 stream_idle_timeout", resp.StatusCode, resp.Header.Get(hdrError), body)
				}
				select {
				case <-ended:
				case <-time.After(5 * time.Second):
					t.Fatal("the upstream did not see its request end")
				}
				if n := counterValue(h.p.m.localReply.WithLabelValues("stream_idle_timeout")); n != 1 {
					t.Fatalf("local replies counted %v, want 1", n)
				}
			})
		}
	}
}

// trickle writes n chunks, gap apart, flushing each: a response that
// takes longer than the idle timeout but is never idle for it.
func trickle(n int, gap time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for i := range n {
			if i > 0 {
				select {
				case <-time.After(gap):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	}
}

func TestIdleTimeoutSparesStreamsThatMove(t *testing.T) {
	const chunks, gap = 13, movingIdleTimeout / 10 // 1.2 s in all
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, client := range []string{"h1", "h2c"} {
			t.Run(string(proto)+"/"+client, func(t *testing.T) {
				up := upstream(t, proto == config.ProtocolHTTP2, trickle(chunks, gap))
				h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, movingIdleRoute))
				c := h.client(client)
				resp := mustGet(t, c, h.url("/stream"))
				body := readAll(t, resp)
				if resp.StatusCode != 200 || strings.Count(body, "chunk ") != chunks {
					t.Fatalf("got %d with %d chunks, want 200 with %d", resp.StatusCode, strings.Count(body, "chunk "), chunks)
				}
			})
		}
	}
}

// The response's header block is bytes moved: an event stream whose
// first event comes less than the idle timeout after its header block,
// though more than that after the request, is not idle. The idle time
// ran from the request until the first byte of body, so the stream was
// cut after its 200 went out.
func TestIdleTimeoutCountsTheResponseHeaderBlock(t *testing.T) {
	// Each wait leaves 900 ms of the idle timeout spare (see
	// movingIdleTimeout); the two outlast it together.
	const idle, head, event = 2 * time.Second, 1100 * time.Millisecond, 1100 * time.Millisecond
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				for i, d := range []time.Duration{head, event} {
					select {
					case <-time.After(d):
					case <-r.Context().Done():
						return
					}
					if i == 0 {
						w.Header().Set("Content-Type", "text/event-stream")
						w.WriteHeader(200)
					} else {
						_, _ = io.WriteString(w, "data: first\n\n")
					}
					w.(http.Flusher).Flush()
				}
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, func(r *config.Route) {
				r.TimeoutDisabled = true
				r.IdleTimeout = idle
			}))
			c := h.h1
			if proto == config.ProtocolHTTP2 {
				c = h.h2c
			}
			resp := mustGet(t, c, h.url("/events"))
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(b) != "data: first\n\n" {
				t.Fatalf("got %d %q (%v), want 200 with the event", resp.StatusCode, b, err)
			}
		})
	}
}

func TestIdleTimeoutSparesUploadsThatMove(t *testing.T) {
	const chunks, gap = 12, movingIdleTimeout / 10 // 1.2 s in all
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "got %d", len(b))
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, movingIdleRoute))
	pr, pw := io.Pipe()
	go func() {
		for range chunks {
			time.Sleep(gap)
			if _, err := pw.Write([]byte("0123456789")); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequestWithContext(ctxT(t, 20*time.Second), "POST", h.url("/up"), pr)
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != fmt.Sprintf("got %d", 10*chunks) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// A retry's body, replayed from memory, moves at the pace the upstream
// takes it, as the client's body did on the first attempt: an upload
// the first attempt was not idle in is not idle on the retry either.
// The replay's reads did not count, so the retry of a body the upstream
// took for longer than the idle timeout was answered 408.
func TestIdleTimeoutSparesReplayedBodiesThatMove(t *testing.T) {
	const size = 6 << 20
	var attempts atomic.Int64
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		// 64 KiB every 16 ms: the 6 MiB take 1.5 s at least, the
		// 1 MiB the server reads ahead (its window) 250 ms, so the
		// replay goes on for longer than movingIdleTimeout.
		buf := make([]byte, 64<<10)
		n := 0
		for {
			k, err := io.ReadFull(r.Body, buf)
			n += k
			if err != nil {
				break
			}
			select {
			case <-time.After(16 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if attempts.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "got %d", n)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2}, movingIdleRoute,
		func(r *config.Route) {
			r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
				MaxBufferedBodyBytes: size, Backoff: config.Backoff{Base: time.Millisecond}}
		}))
	resp, body := do(t, h.h1, "PUT", h.url("/up"), bytes.Repeat([]byte("x"), size))
	if resp.StatusCode != 200 || body != fmt.Sprintf("got %d", size) {
		t.Fatalf("got %d %q %q, want 200 from the retry with the whole body", resp.StatusCode, resp.Header.Get(hdrError), body)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}

func TestIdleTimeoutCutsStalledResponse(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, client := range []string{"h1", "h2c"} {
			t.Run(string(proto)+"/"+client, func(t *testing.T) {
				up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
					// No length: the proxy passes each piece on at once.
					_, _ = io.WriteString(w, "first part")
					w.(http.Flusher).Flush()
					<-r.Context().Done() // the rest never comes
				})
				h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, movingIdleRoute))
				c := h.client(client)
				start := time.Now()
				resp := mustGet(t, c, h.url("/stall"))
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("the body ended cleanly (%q); want it cut", b)
				}
				if string(b) != "first part" {
					t.Fatalf("got %q before the cut, want the first part", b)
				}
				checkElapsedAbout(t, time.Since(start), movingIdleTimeout)
				eventually(t, 5*time.Second, "the active-requests gauge back to 0", func() bool {
					return counterValue(h.p.m.active.WithLabelValues("svc")) == 0
				})
			})
		}
	}
}

// A client that stops sending its body is idle too: 408, and the
// upstream sees its request end.
func TestIdleTimeoutEndsStalledRequestBody(t *testing.T) {
	su := &stallUpstream{}
	up := upstream(t, false, su.handler)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, idleRoute))
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	checkIdleElapsed(t, time.Since(start))
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(hdrError) != "stream_idle_timeout" {
		t.Fatalf("got %d %q, want 408 stream_idle_timeout", resp.StatusCode, resp.Header.Get(hdrError))
	}
	if su.arrived.Load() {
		eventually(t, 5*time.Second, "the upstream to see its request end", su.aborted.Load)
	}
	if su.completed.Load() {
		t.Fatal("the upstream read a whole body")
	}
}

func TestIdleTimeoutEndsGRPCStreamWithStatus(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Routes[0].TimeoutDisabled = true
	cfg.Routes[0].IdleTimeout = movingIdleTimeout
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)

	// Messages 100 ms apart outlive the idle timeout together.
	params := make([]*grpc_testing.ResponseParameters, 12)
	for i := range params {
		params[i] = &grpc_testing.ResponseParameters{Size: 1, IntervalUs: int32(movingIdleTimeout / 10 / time.Microsecond)}
	}
	st, err := c.StreamingOutputCall(ctxT(t, 20*time.Second), &grpc_testing.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if _, err := st.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("after the messages: %v, want the call's end", err)
	}

	// One message, then a gap longer than the idle timeout. The idle
	// time runs from the proxy's write of the message, before the
	// client has it: it is measured from before the call.
	start := time.Now()
	st, err = quietAfterOneMessage(t, c)
	checkElapsedAbout(t, time.Since(start), movingIdleTimeout)
	if s := status.Convert(err); s.Code() != codes.DeadlineExceeded || s.Message() != "stream idle timeout" {
		t.Fatalf("after the gap: %v, want DeadlineExceeded: stream idle timeout", err)
	}
	if md := st.Trailer(); strings.Join(md.Get(hdrError), ",") != "stream_idle_timeout" {
		t.Fatalf("trailers %v, want %s: stream_idle_timeout", md, hdrError)
	}
}

// A tunnel the route switches to is closed after the route's
// idle_timeout, not the listener's.
func TestIdleTimeoutBoundsUpgradeTunnel(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))}, movingIdleRoute))
	c, br := openEchoTunnel(t, h, "")
	// Talk for longer than the idle timeout, then go quiet.
	deadline := time.Now().Add(movingIdleTimeout + 200*time.Millisecond)
	var start time.Time
	for i := 0; time.Now().Before(deadline); i++ {
		time.Sleep(20 * time.Millisecond)
		start = time.Now()
		fmt.Fprintf(c, "msg %d\n", i)
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("echo msg %d\n", i) {
			t.Fatalf("exchange %d: %q %v", i, line, err)
		}
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the quiet tunnel sent a line")
	}
	checkElapsedAbout(t, time.Since(start), movingIdleTimeout)
	eventually(t, 5*time.Second, "tunnel to end", func() bool { return h.p.inflight.Load() == 0 })
}

// A client that stops reading the response is idle too: the write that
// waits for it is given up after the idle timeout, the request ends and
// the upstream sees it end.
func TestIdleTimeoutEndsResponseClientDoesNotRead(t *testing.T) {
	for _, client := range []string{"h1", "h2c"} {
		t.Run(client, func(t *testing.T) {
			ended := make(chan struct{})
			up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				defer close(ended)
				chunk := make([]byte, 32<<10)
				for range 8192 { // 256 MiB at most
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, movingIdleRoute))
			c := h.client(client)
			resp := mustGet(t, c, h.url("/big"))
			defer resp.Body.Close()
			// Read a little, then nothing more.
			if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream's response did not end")
			}
			eventually(t, 5*time.Second, "the active-requests gauge back to 0", func() bool {
				return counterValue(h.p.m.active.WithLabelValues("svc")) == 0
			})
			if _, err := io.Copy(io.Discard, resp.Body); err == nil {
				t.Fatal("the body ended cleanly; want it cut")
			}
		})
	}
}

// The end of a response (its last bytes held back, the END_STREAM,
// the trailers) is a write to the client like any other: it may wait
// for the client up to the idle timeout from the body's end. It was
// bounded by the write deadline of the last piece of body, set before
// that piece waited for the client, so a response that was never idle
// for the timeout was reset INTERNAL_ERROR once whole, and, with no
// route timeout, by a grace of 1 s whatever the idle timeout.
func TestIdleTimeoutLetsTheResponseEndWaitForTheClient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		route  func(*config.Route)
		window uint32        // the client's initial stream window
		open   time.Duration // when the client opens it, from the header block
		body   int
		end    time.Duration // the upstream's wait before ending its body
	}{
		// The last piece waits 1 s for window; the body ends 2.25 s
		// after it was read, 1.25 s after it was written. Each wait
		// leaves 750 ms or more of the idle timeout spare (see
		// movingIdleTimeout): with 1 s, 500 ms and 1.25 s the end had
		// 250 ms, which a stall on a loaded machine could take.
		{"after a slow write", func(r *config.Route) { r.Timeout = 30 * time.Second; r.IdleTimeout = 2 * time.Second },
			16 << 10, time.Second, 32 << 10, 2250 * time.Millisecond},
		// A short body is held back until the end, which waits 1.3 s
		// for window.
		{"held back", func(r *config.Route) { r.TimeoutDisabled = true; r.IdleTimeout = 2 * time.Second },
			0, 1300 * time.Millisecond, 1 << 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				if tc.end == 0 {
					w.Header().Set("Content-Length", fmt.Sprint(tc.body))
				}
				_, _ = w.Write(make([]byte, tc.body))
				if tc.end > 0 {
					w.(http.Flusher).Flush()
					select {
					case <-time.After(tc.end):
					case <-r.Context().Done():
					}
				}
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, tc.route))
			status, n, err := h2GetOpeningWindow(t, h.out, tc.window, tc.open)
			if err != nil || status != "200" || n != tc.body {
				t.Fatalf("got %s with %d bytes (%v), want 200 with the whole body of %d", status, n, err, tc.body)
			}
		})
	}
}

// A response's header block waits for the client too when the
// connection's pending bytes are at their bound (a client that stopped
// reading): the idle timeout bounds that wait, as it bounds each write
// of the body. Without a route timeout nothing did, so an event stream
// asked for on such a connection held its request (its slot, breaker
// permit, goroutine and upstream request) for as long as the client
// kept the connection open. The event stream's request must reach its
// upstream (on a connection of its own) before the idle timeout, so
// that the upstream sees it end.
func TestIdleTimeoutBoundsTheHeaderBlockOfAClientThatDoesNotRead(t *testing.T) {
	var sent atomic.Int64
	ended := make(chan struct{})
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			defer close(ended)
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		chunk := make([]byte, 16<<10)
		for range 16384 { // 256 MiB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			sent.Add(int64(len(chunk)))
		}
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, movingIdleRoute)
	// /big has no idle timeout: its responses fill the connection and
	// stay, waiting for room.
	cfg.Routes = append([]config.Route{{Name: "big", Cluster: "svc", TimeoutDisabled: true,
		Match: config.RouteMatch{Path: config.PathMatch{Exact: "/big"}}}}, cfg.Routes...)
	h := startProxy(t, cfg)

	// Windows as large as they go: only the connection's pending bytes
	// hold the server's writes back.
	_, fr := dialRawH2(t, h.out, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = fr.WriteSettingsAck()
			break
		}
	}
	// The client reads nothing more. Once the bodies of four streams
	// have stopped moving for a second (the socket's buffers and the
	// pending bytes full), the event stream is asked for.
	for id := uint32(1); id <= 7; id += 2 {
		writeRawGet(t, fr, id, "/big")
	}
	last, still := int64(-1), time.Now()
	eventually(t, 20*time.Second, "the body to fill the connection", func() bool {
		if n := sent.Load(); n != last {
			last, still = n, time.Now()
		}
		return last > 0 && time.Since(still) > time.Second
	})
	writeRawGet(t, fr, 9, "/events")
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream's upstream request did not end")
	}
	eventually(t, 5*time.Second, "the event stream's request to end", func() bool {
		return counterValue(h.p.m.active.WithLabelValues("svc")) == 4 // /big's
	})
}

// h2GetOpeningWindow sends GET / over h2c with an initial stream window
// of window, opens it open after the response's header block, and reads
// stream 1 to its end: it returns the status and the body's length, and
// an error if the stream was reset.
func h2GetOpeningWindow(t *testing.T, addr string, window uint32, open time.Duration) (status string, n int, err error) {
	t.Helper()
	_, fr := dialRawH2(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	writeRawGet(t, fr, 1, "/")
	// The frames are read on a goroutine of their own, so that the
	// window can be opened while a read waits; what is needed of each
	// is taken there, as the framer reuses a frame on the next read.
	type event struct {
		status string // of a header block for stream 1
		n      int    // DATA for stream 1
		end    bool
		err    error // a reset, GOAWAY or failed read
	}
	events := make(chan event)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			var e event
			f, err := fr.ReadFrame()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
				continue
			case *http2.MetaHeadersFrame:
				if f.StreamID != 1 {
					continue
				}
				e.status, e.end = f.PseudoValue("status"), f.StreamEnded()
			case *http2.DataFrame:
				if f.StreamID != 1 {
					continue
				}
				e.n, e.end = len(f.Data()), f.StreamEnded()
			case *http2.RSTStreamFrame:
				e.err = fmt.Errorf("stream %d reset %v", f.StreamID, f.ErrCode)
			case *http2.GoAwayFrame:
				e.err = fmt.Errorf("GOAWAY %v", f.ErrCode)
			case nil:
				e.err = err
			default:
				continue
			}
			select {
			case events <- e:
			case <-done:
				return
			}
			if e.err != nil {
				return
			}
		}
	}()
	var opened <-chan time.Time
	for {
		select {
		case <-opened:
			opened = nil
			if err := fr.WriteWindowUpdate(1, 1<<20); err != nil {
				t.Fatal(err)
			}
		case e := <-events:
			if e.err != nil {
				return status, n, e.err
			}
			if e.status != "" && status == "" {
				status, opened = e.status, time.After(open)
			}
			if n += e.n; e.end {
				return status, n, nil
			}
		}
	}
}

// A gRPC stream both of whose sides went quiet, the client's still
// open, is ended by the idle timeout with the client's body awaited:
// that counts neither way, as a client that stalls its body before the
// response does. It counted against the endpoint as a timeout, so a
// cluster's breaker opened on clients that left their streams quiet.
// An upstream that goes quiet once the client's side has ended still
// counts.
func TestIdleTimeoutBlamesTheUpstreamOnlyWhenTheClientIsNotAwaited(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Routes[0].TimeoutDisabled = true
	cfg.Routes[0].IdleTimeout = movingIdleTimeout
	cc := cfg.Clusters["grpc"]
	cc.CircuitBreaker = tripsAfter(1)
	cfg.Clusters["grpc"] = cc
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	breakerState := func() breaker.State {
		return h.p.snap.Load().clusters["grpc"].res.br.Snapshot(time.Now()).State
	}
	checkIdleEnd := func(err error) {
		t.Helper()
		if s := status.Convert(err); s.Code() != codes.DeadlineExceeded || s.Message() != "stream idle timeout" {
			t.Fatalf("after the quiet: %v, want DeadlineExceeded: stream idle timeout", err)
		}
	}

	// Both sides quiet after one exchange, the client's side open.
	for range 2 {
		st, err := c.FullDuplexCall(ctxT(t, 20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&grpc_testing.StreamingOutputCallRequest{
			ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		checkIdleEnd(err)
		eventually(t, 5*time.Second, "the request to end", func() bool { return h.p.inflight.Load() == 0 })
		if s := breakerState(); s != breaker.StateClosed {
			t.Fatalf("a stream the client left quiet moved the breaker to %v", s)
		}
	}

	// The upstream quiet after the client's side ended.
	_, err := quietAfterOneMessage(t, c)
	checkIdleEnd(err)
	eventually(t, 5*time.Second, "the silent upstream to open the breaker", func() bool {
		return breakerState() == breaker.StateOpen
	})
}

// quietAfterOneMessage makes a server-streaming call whose upstream
// sends one message, then nothing for 10 s, and returns the call and
// what its second Recv got.
func quietAfterOneMessage(t *testing.T, c grpc_testing.TestServiceClient) (grpc_testing.TestService_StreamingOutputCallClient, error) {
	t.Helper()
	st, err := c.StreamingOutputCall(ctxT(t, 20*time.Second), &grpc_testing.StreamingOutputCallRequest{
		ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 10e6}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	return st, err
}

// An informational response is bytes moved: an upstream that sends 102
// Processing more often than the idle timeout, while it works on an
// answer that takes longer, is not idle.
func TestIdleTimeoutCountsInformationalResponses(t *testing.T) {
	const n, gap = 5, movingIdleTimeout / 4 // 1.25 s before the answer
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, client := range []string{"h1", "h2c"} {
			t.Run(string(proto)+"/"+client, func(t *testing.T) {
				up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
					for range n {
						select {
						case <-time.After(gap):
						case <-r.Context().Done():
							return
						}
						w.WriteHeader(http.StatusProcessing)
					}
					fmt.Fprint(w, "done")
				})
				h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, movingIdleRoute))
				resp := mustGet(t, h.client(client), h.url("/work"))
				if body := readAll(t, resp); resp.StatusCode != 200 || body != "done" {
					t.Fatalf("got %d %q (%s), want 200 done", resp.StatusCode, body, resp.Header.Get(hdrError))
				}
			})
		}
	}
}

// A retry's back-off moves no bytes: one longer than the route's
// idle_timeout ends the request with 408 stream_idle_timeout, the retry
// not sent.
func TestIdleTimeoutEndsARetrysBackoff(t *testing.T) {
	bad := failing(503)
	up := upstream(t, false, bad.ServeHTTP)
	cfg := retryCfg([]string{addr(up)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
		Backoff: config.Backoff{Base: time.Hour, Max: time.Hour}}, movingIdleRoute)
	// The back-off drawn is the longest there is.
	h := startProxy(t, cfg, func(o *Options) { o.Int63n = func(n int64) int64 { return n - 1 } })
	start := time.Now()
	resp := mustGet(t, h.h1, h.url("/"))
	body := readAll(t, resp)
	checkElapsedAbout(t, time.Since(start), movingIdleTimeout)
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(hdrError) != "stream_idle_timeout" {
		t.Fatalf("got %d %q %q, want 408 stream_idle_timeout", resp.StatusCode, resp.Header.Get(hdrError), body)
	}
	if n := bad.n.Load(); n != 1 {
		t.Fatalf("%d attempts, want the first alone", n)
	}
}
