package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Connections share read and write buffers through the Transport's
// pools. These tests run exchanges of every shape at once through one
// Transport, few connections idle, so that a buffer used by two
// connections at once, or after it went back to a pool, shows as a
// wrong byte (or as a race under -race).

// pattern is n bytes that differ from one id to another.
func pattern(id, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(id*131 + i*7 + i>>8)
	}
	return b
}

// chunkyReader returns its bytes in reads of at most step bytes, with no
// length known to the Transport (the body goes chunked).
type chunkyReader struct {
	b    []byte
	step int
}

func (r *chunkyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// echoPattern answers with pattern(id, n) and then the request body, n
// and id from the query: with a Content-Length, or chunked in pieces
// (chunked=1) with the body's length in a trailer.
func echoPattern(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, _ := strconv.Atoi(r.URL.Query().Get("id"))
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	out := append(pattern(id, n), body...)
	w.Header().Set("X-Id", strconv.Itoa(id))
	if r.URL.Query().Get("chunked") == "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.Write(out)
		return
	}
	w.Header().Set("Trailer", "X-Len")
	f := w.(http.Flusher)
	for len(out) > 0 {
		k := min(len(out), 1500+id%700)
		w.Write(out[:k])
		f.Flush()
		out = out[k:]
	}
	w.Header().Set("X-Len", strconv.Itoa(len(body)))
}

func TestPooledBuffersConcurrentExchanges(t *testing.T) {
	srv := startServer(t, echoPattern)
	sizes := []int{0, 1, 511, 1024, 1025, 4095, 4096, 4097, 17000, 70000}
	for _, bufSize := range []int{0, 1024} {
		t.Run(fmt.Sprintf("buffers=%d", bufSize), func(t *testing.T) {
			tr := newTransport(t, func(tr *Transport) {
				tr.MaxIdlePerHost = 1
				tr.MaxConnsPerHost = 4
				tr.ReadBufferSize, tr.WriteBufferSize = bufSize, bufSize
			})
			ctx := ctxTimeout(t, 30*time.Second)
			const workers, perWorker = 6, 30
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWorker {
						id := w*perWorker + i
						if err := patternExchange(ctx, tr, srv.URL, id, sizes); err != nil {
							t.Errorf("request %d: %v", id, err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// patternExchange sends one request to echoPattern, its shape chosen by
// id, and checks every byte of the answer (or, for one in seven, reads
// part of it and closes the body).
func patternExchange(ctx context.Context, tr *Transport, base string, id int, sizes []int) error {
	reqBody := pattern(id+1000, sizes[id%len(sizes)])
	respN := sizes[(id/3)%len(sizes)]
	chunkedResp := id%2 == 1
	url := fmt.Sprintf("%s/?id=%d&n=%d", base, id, respN)
	if chunkedResp {
		url += "&chunked=1"
	}
	method := "POST"
	var body io.Reader = bytes.NewReader(reqBody)
	if len(reqBody) == 0 {
		method, body = "GET", nil
	} else if id%4 >= 2 {
		body = &chunkyReader{b: reqBody, step: 3000 + id}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if id%4 >= 2 && len(reqBody) > 0 {
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sent": nil}
		req.Trailer.Set("X-Sent", strconv.Itoa(len(reqBody)))
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get("X-Id"); got != strconv.Itoa(id) {
		return fmt.Errorf("X-Id %q, want %d", got, id)
	}
	want := append(pattern(id, respN), reqBody...)
	if id%7 == 3 && len(want) > 100 {
		// Read a little, then give the rest up.
		got := make([]byte, 100)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			return fmt.Errorf("reading the start of the body: %w", err)
		}
		if !bytes.Equal(got, want[:100]) {
			return errors.New("the body's first bytes differ")
		}
		return resp.Body.Close()
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("body of %d bytes (want %d) differs from byte %d", len(got), len(want), i)
	}
	if chunkedResp {
		if got := resp.Trailer.Get("X-Len"); got != strconv.Itoa(len(reqBody)) {
			return fmt.Errorf("trailer X-Len %q, want %d", got, len(reqBody))
		}
	}
	return nil
}

// handoffCtx is a context that, the first time its Done is asked for
// while a request waits for a connection to tr's host, makes held's
// connection go back (handed to that waiting request) and then ends:
// the waiting request sees its context end and a connection arrive at
// once.
type handoffCtx struct {
	context.Context // never ends; for Value
	tr              *Transport
	held            *http.Response
	once            atomic.Bool
	done            chan struct{}
}

func (c *handoffCtx) Done() <-chan struct{} {
	if !c.once.Load() && c.waiting() && c.once.CompareAndSwap(false, true) {
		io.Copy(io.Discard, c.held.Body) // to EOF: back to the pool
		c.held.Body.Close()
		close(c.done)
	}
	return c.done
}

func (c *handoffCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (c *handoffCtx) waiting() bool {
	c.tr.mu.Lock()
	defer c.tr.mu.Unlock()
	for _, hp := range c.tr.hosts {
		if len(hp.waiters) > 0 {
			return true
		}
	}
	return false
}

// A request waiting at MaxConnsPerHost whose context ends as a
// connection is handed to it passes the connection on (here to the
// idle list), which must not need the read buffer the connection gave
// up when it went idle.
func TestWaiterCancelledAsConnectionHandedOver(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	ctx := ctxTimeout(t, 20*time.Second)
	passedOn := 0
	for i := 0; i < 40 && passedOn < 3; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		held, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		hc := &handoffCtx{Context: context.Background(), tr: tr, held: held, done: make(chan struct{})}
		resp, err := tr.RoundTripHooks(hc, req, nil, time.Time{})
		if !hc.once.Load() {
			t.Fatal("the request never waited for a connection")
		}
		switch {
		case err == nil:
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		case strings.Contains(err.Error(), "waiting for a connection"):
			passedOn++
		}
		// Whatever happened, the host's one connection is usable.
		if _, body := get(t, tr, srv.URL); body != "hello" {
			t.Fatalf("body %q after the handover", body)
		}
	}
	if passedOn == 0 {
		t.Fatal("no request passed a connection on")
	}
}

// A body sent after "100 Continue" (and one a final response refused)
// uses the write buffer while other connections take and return theirs.
func TestPooledBuffersExpectContinue(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "no")
			return
		}
		echoPattern(w, r)
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxIdlePerHost = 1
		tr.ExpectContinueTimeout = 10 * time.Second
	})
	ctx := ctxTimeout(t, 30*time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				id := w*12 + i
				body := pattern(id, []int{100, 5000, 20000}[id%3])
				path := "/?id=" + strconv.Itoa(id) + "&n=300"
				if id%4 == 3 {
					path = "/refuse"
				}
				req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+path, bytes.NewReader(body))
				req.Header.Set("Expect", "100-continue")
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("request %d: %v", id, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Errorf("request %d: reading body: %v", id, err)
					return
				}
				want, code := append(pattern(id, 300), body...), 200
				if id%4 == 3 {
					want, code = []byte("no"), http.StatusForbidden
				}
				if resp.StatusCode != code || !bytes.Equal(got, want) {
					t.Errorf("request %d: status %d, %d bytes (want %d, %d bytes, equal %v)", id, resp.StatusCode, len(got), code, len(want), bytes.Equal(got, want))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// An upgraded connection keeps its read buffer (with the bytes that came
// with the 101) for good, while other exchanges take and return buffers.
func TestPooledBuffersUpgradeKeepsReader(t *testing.T) {
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			req, body, err := readRequest(br)
			if err != nil {
				return
			}
			if req.Header.Get("Upgrade") == "echo" {
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nwelcome;")
				io.Copy(c, br)
				return
			}
			id, _ := strconv.Atoi(req.URL.Query().Get("id"))
			out := append(pattern(id, 3000), body...)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(out))
			c.Write(out)
		}
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxIdlePerHost = 1 })
	ctx := ctxTimeout(t, 20*time.Second)
	base := "http://" + rs.addr

	var ups []io.ReadWriteCloser
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/up", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		up := resp.Body.(io.ReadWriteCloser)
		defer up.Close()
		ups = append(ups, up)
	}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				id := w*15 + i
				body := pattern(id+7, 2000+id*100)
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/?id="+strconv.Itoa(id), bytes.NewReader(body))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("request %d: %v", id, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, append(pattern(id, 3000), body...)) {
					t.Errorf("request %d: %d bytes, err %v", id, len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, up := range ups {
		msg := fmt.Sprintf("message %d over an upgraded connection", i)
		if _, err := io.WriteString(up, msg); err != nil {
			t.Fatal(err)
		}
		want := "welcome;" + msg
		got := make([]byte, len(want))
		if _, err := io.ReadFull(up, got); err != nil {
			t.Fatalf("upgraded connection %d: %v", i, err)
		}
		if string(got) != want {
			t.Fatalf("upgraded connection %d read %q, want %q", i, got, want)
		}
	}
}

// Close while a Read blocks on the connection, with other exchanges
// running: the closed body's connection and buffer are dropped, and no
// other exchange sees a byte of it.
func TestPooledBuffersCloseRacingRead(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			w.Header().Set("X-Id", "stall")
			w.Write(bytes.Repeat([]byte("s"), 3000))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		echoPattern(w, r)
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxIdlePerHost = 1 })
	ctx := ctxTimeout(t, 30*time.Second)
	sizes := []int{0, 10, 4097, 9000}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := range 40 {
			if err := patternExchange(ctx, tr, srv.URL, id, sizes); err != nil {
				t.Errorf("request %d: %v", id, err)
				return
			}
		}
	}()
	for i := range 8 {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stall", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 100)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatal(err)
		}
		readErr := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, resp.Body) // blocks after the first 3000 bytes
			readErr <- err
		}()
		if i%2 == 1 {
			// Let the Read block first, most of the time.
			awaitReading(t, "the reader to drain the buffer", resp)
		}
		resp.Body.Close()
		select {
		case err := <-readErr:
			if err == nil {
				t.Fatal("a Read racing Close ended without an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not end a blocked Read")
		}
	}
	wg.Wait()
}

// awaitReading waits until a Read of resp's body is under way (blocked,
// most likely, for want of bytes).
func awaitReading(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	eventually(t, what, func() bool {
		b := resp.Body.(*responseBody)
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.reading
	})
}
