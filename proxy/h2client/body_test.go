package h2client

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestLargeHeaderBlockUsesContinuation(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Len", strings.Repeat("r", len(r.Header.Get("X-Big"))))
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", s.url("/"), nil)
	big := strings.Repeat("b", 50<<10)
	req.Header.Set("X-Big", big)
	resp, _ := do(t, tr, req)
	if got := resp.Header.Get("X-Len"); len(got) != len(big) {
		t.Fatalf("server saw a %d-byte field, want %d", len(got), len(big))
	}
}

func TestResponseEndsBeforeRequestBodyCancelsIt(t *testing.T) {
	rst := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.respond(h.StreamID, "early")
		if code, err := rc.readReset(); err == nil {
			rst <- code
		}
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", pr)
	go pw.Write([]byte("first part"))
	_, body := do(t, tr, req)
	if body != "early" {
		t.Fatalf("body %q", body)
	}
	if code := recv(t, rst); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
	// The request body is closed (by a goroutine of its own, so a write
	// may still meet the sender's last Read), so a writer blocked on it
	// is released.
	eventuallyPipeClosed(t, "the abandoned body to be closed", pw)
}

func TestRequestBodyErrorResetsStream(t *testing.T) {
	rst := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		if code, err := rc.readReset(); err == nil {
			rst <- code
		}
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", pr)
	resp := roundTrip(t, tr, req)
	defer resp.Body.Close()
	bodyErr := errors.New("client went away")
	pw.CloseWithError(bodyErr)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, bodyErr) {
		t.Fatalf("response body err = %v, want the request body's", err)
	}
	if code := recv(t, rst); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
}

func TestQueuedBytesAreBounded(t *testing.T) {
	const size = 12 << 20
	release := newGate()
	got := make(chan int, 1)
	s := startRaw(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}}, func(rc *rawConn, n int) {
		rc.fr.WriteWindowUpdate(0, 1<<31-1-65535)
		<-release.ch // read nothing for a while: the socket buffers fill up
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		total := 0
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			if d, ok := f.(*http2.DataFrame); ok {
				total += len(d.Data())
				if d.StreamEnded() {
					break
				}
			}
		}
		got <- total
		rc.respond(h.StreamID, "ok")
		io.Copy(io.Discard, rc)
	})
	t.Cleanup(release.open)
	tr := newTransport(t)
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", io.MultiReader(strings.NewReader(strings.Repeat("w", size))))
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	// While the server reads nothing, the queue stays within its bound.
	var c *conn
	eventually(t, "the connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if hp := tr.hosts[s.addr]; hp != nil && len(hp.conns) == 1 {
			c = hp.conns[0]
		}
		return c != nil
	})
	largest := 0
	sample := func() {
		c.mu.Lock()
		largest = max(largest, len(c.wbuf))
		c.mu.Unlock()
	}
	// Once the socket buffers are full the queue grows to its bound...
	for deadline := time.Now().Add(10 * time.Second); largest < maxPending && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		sample()
	}
	// ...and stays there.
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		sample()
	}
	if limit := maxPending + defaultMaxFrame + 9; largest > limit || largest < maxPending {
		t.Fatalf("largest queue %d bytes, want within [%d, %d]", largest, maxPending, limit)
	}
	release.open()
	if err := recv(t, done); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, got); n != size {
		t.Fatalf("server got %d bytes", n)
	}
}

func TestCancellationStormLeavesConnectionUsable(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for range 20 {
			if _, err := w.Write([]byte(strings.Repeat("s", 1000))); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	tr := newTransport(t)
	get(t, tr, s.url("/")) // the connection, before contexts start ending
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := ctxTimeout(t, time.Duration(rand.IntN(3000))*time.Microsecond)
			req, _ := http.NewRequestWithContext(ctx, "POST", s.url("/"), strings.NewReader("body"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				return
			}
			if i%3 == 0 {
				buf := make([]byte, 10)
				resp.Body.Read(buf)
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if _, body := get(t, tr, s.url("/")); len(body) != 20000 {
		t.Fatalf("body of %d bytes after the storm", len(body))
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	eventually(t, "every stream to end", func() bool {
		tr.mu.Lock()
		c := tr.hosts[s.addr].conns[0]
		tr.mu.Unlock()
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) == 0 && c.reserved == 0
	})
}

func TestConcurrentLargeEchoesShareWindows(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		// Echo as it reads: full duplex, both directions under flow
		// control at once.
		buf := make([]byte, 8<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	tr := newTransport(t)
	const streams = 40
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := 50<<10 + rand.IntN(600<<10)
			payload := make([]byte, size)
			for j := range payload {
				payload[j] = byte(i + j*7)
			}
			req, _ := http.NewRequest("POST", s.url("/"), io.MultiReader(bytesReader(payload)))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != string(payload) {
				errs <- errors.New("echo differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
