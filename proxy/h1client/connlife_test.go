package h1client

import (
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// bodies of get for each of n requests to rs, on tr.
func bodies(t *testing.T, tr *Transport, addr string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		_, out[i] = get(t, tr, "http://"+addr)
	}
	return out
}

// MaxRequestsPerConn closes a connection at the end of its last
// exchange: with 2, five requests in a row use three connections, two
// exchanges on each of the first two.
func TestMaxRequestsPerConn(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		b := fmt.Sprintf("%d.%d", n, i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxRequestsPerConn = 2 })
	got := bodies(t, tr, rs.addr, 5)
	want := []string{"0.0", "0.1", "1.0", "1.1", "2.0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connection.exchange of each response %v, want %v", got, want)
	}
}

// MaxConnAge: a connection past it is not reused, whether it aged while
// idle in the pool or while carrying an exchange.
func TestMaxConnAge(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		b := fmt.Sprintf("%d.%d", n, i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { now.Add(int64(d)) }
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnAge = time.Minute
		tr.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	got := bodies(t, tr, rs.addr, 2)
	advance(time.Minute) // aged while idle
	got = append(got, bodies(t, tr, rs.addr, 2)...)
	want := []string{"0.0", "0.1", "1.0", "1.1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connection.exchange of each response %v, want %v", got, want)
	}

	// Aged during an exchange: closed at its end.
	resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+rs.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	advance(time.Minute)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if b := string(raw); err != nil || b != "1.2" {
		t.Fatalf("exchange on the second connection: %q %v", raw, err)
	}
	if got := bodies(t, tr, rs.addr, 1); got[0] != "2.0" {
		t.Fatalf("after a connection aged during its exchange: %q, want a new connection's 2.0", got[0])
	}
}

// A connection handed on without carrying an exchange (a waiter whose
// context ended as it was handed one passes it on through release) counts
// none: MaxRequestsPerConn counts exchanges begun, not releases.
func TestMaxRequestsPerConnCountsOnlyExchanges(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		b := fmt.Sprintf("%d.%d", n, i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxRequestsPerConn = 2 })
	got := bodies(t, tr, rs.addr, 1)
	req := mustRequest(t, "GET", "http://"+rs.addr, nil)
	hp, err := tr.host(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, wasIdle, _, err := tr.getConn(req.Context(), hp, time.Time{}, false, false)
	if err != nil || !wasIdle {
		t.Fatalf("taking the idle connection: %v (idle %v)", err, wasIdle)
	}
	c.release(true) // handed on unused
	got = append(got, bodies(t, tr, rs.addr, 2)...)
	if want := []string{"0.0", "0.1", "1.0"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connection.exchange of each response %v, want %v", got, want)
	}
}
