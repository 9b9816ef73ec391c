package h2client

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// remoteAddrs serves each request its client's address, which names the
// connection it came on.
func remoteAddrs(t *testing.T) *h2Server {
	return startH2(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
}

// connOf reports the connection (by its number in order of first use) of
// each of the answers.
func connOf(answers []string) []int {
	seen := map[string]int{}
	out := make([]int, len(answers))
	for i, a := range answers {
		n, ok := seen[a]
		if !ok {
			n = len(seen)
			seen[a] = n
		}
		out[i] = n
	}
	return out
}

// MaxStreamsPerConn: the stream that reaches the limit finishes on its
// connection, which then closes; the next request dials.
func TestMaxStreamsPerConn(t *testing.T) {
	s := remoteAddrs(t)
	tr := newTransport(t, func(tr *Transport) { tr.MaxStreamsPerConn = 2 })
	var answers []string
	for range 5 {
		_, b := get(t, tr, s.url("/"))
		answers = append(answers, b)
	}
	if got, want := fmt.Sprint(connOf(answers)), "[0 0 1 1 2]"; got != want {
		t.Fatalf("connections of five requests %s, want %s", got, want)
	}
	eventually(t, "spent connections closed", func() bool { return tr.conns(s.addr) == 1 })
}

// A stream in flight keeps its connection past the limit, and a request
// made meanwhile goes to a new connection.
func TestMaxStreamsPerConnLeavesTheLastStreamRunning(t *testing.T) {
	release := make(chan struct{})
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
		}
		io.WriteString(w, r.RemoteAddr)
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxStreamsPerConn = 1 })
	slow := roundTrip(t, tr, mustReq(t, s.url("/slow")))
	_, other := get(t, tr, s.url("/"))
	close(release)
	b, err := io.ReadAll(slow.Body)
	slow.Body.Close()
	if err != nil || !strings.Contains(string(b), "127.0.0.1") || string(b) == other {
		t.Fatalf("the slow stream: %q %v; the other request came from %q", b, err, other)
	}
	eventually(t, "both connections closed", func() bool { return tr.conns(s.addr) == 0 })
}

// MaxConnAge: a connection past it takes no new stream and closes once
// idle.
func TestMaxConnAge(t *testing.T) {
	s := remoteAddrs(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC).UnixNano())
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnAge = time.Minute
		tr.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	var answers []string
	for i := range 4 {
		if i == 2 {
			now.Add(int64(time.Minute))
		}
		_, b := get(t, tr, s.url("/"))
		answers = append(answers, b)
	}
	if got, want := fmt.Sprint(connOf(answers)), "[0 0 1 1]"; got != want {
		t.Fatalf("connections of four requests %s, want %s", got, want)
	}
	eventually(t, "the aged connection closed", func() bool { return tr.conns(s.addr) == 1 })
}

// conns is how many connections to addr the Transport lists.
func (t *Transport) conns(addr string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if hp := t.hosts[addr]; hp != nil {
		return len(hp.conns)
	}
	return 0
}

func mustReq(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
