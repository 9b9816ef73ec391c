package sockio

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"testing"
	"time"
)

// A deadline further away than time.Duration reaches (time.Until
// saturates) is as good as none; it must not wrap round into the past.
func TestFarFutureDeadlineNeverExpires(t *testing.T) {
	for _, far := range []time.Time{
		time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Unix(math.MaxInt64/2, 0),
		time.Now().Add(math.MaxInt64),
	} {
		forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
			c, s := pair(t, wrap)
			if err := c.SetDeadline(far); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatalf("Write with the deadline at %v: %v", far, err)
			}
			if _, err := s.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if n, err := c.Read(buf); err != nil || n == 0 {
				t.Fatalf("Read with the deadline at %v = %d, %v", far, n, err)
			}
		})
	}
}

// A deadline far in the past is passed, however far.
func TestFarPastDeadlineHasPassed(t *testing.T) {
	for _, past := range []time.Time{
		time.Unix(1, 0),
		time.Unix(math.MinInt64/2, 0),
		time.Now().Add(math.MinInt64),
	} {
		forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
			c, s := pair(t, wrap)
			if _, err := s.Write([]byte("pending")); err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(past)
			if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Read with the deadline at %v: %v, want os.ErrDeadlineExceeded", past, err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Write with the deadline at %v: %v, want os.ErrDeadlineExceeded", past, err)
			}
		})
	}
}

// A deadline moved later while a call waits holds the call until the
// new one: the timer armed for the old one must not end it.
func TestDeadlineExtendedWhileWaiting(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		// The old deadline must not pass before the read is seen
		// waiting and the deadline moved: finding the read among the
		// goroutines took more than 100 ms now and then on a loaded
		// machine under the race detector, so it is a second away.
		old := time.Now().Add(time.Second)
		c.SetReadDeadline(old)
		done := make(chan result, 1)
		go func() {
			n, err := blockedRead(c, make([]byte, 16))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedRead")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		select {
		case r := <-done:
			t.Fatalf("Read returned %d, %v after its deadline was moved later", r.n, r.err)
		case <-time.After(time.Until(old) + 300*time.Millisecond):
		}
		if _, err := s.Write([]byte("late")); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.n != 4 || r.err != nil {
			t.Fatalf("Read = %d, %v; want 4, nil", r.n, r.err)
		}
	})
}

// A deadline moved earlier while a Write waits for room ends it at the
// new one.
func TestWriteDeadlineShortenedWhileWaiting(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		smallBuffers(t, c, s)
		fillSendBuffer(t, c)
		c.SetWriteDeadline(time.Now().Add(time.Hour))
		done := make(chan result, 1)
		go func() {
			n, err := blockedWrite(c, make([]byte, 1<<20))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedWrite")
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		select {
		case r := <-done:
			if !errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write = %d, %v; want os.ErrDeadlineExceeded", r.n, r.err)
			}
		case <-time.After(10 * time.Second):
			c.Close()
			<-done
			t.Fatal("the shortened deadline did not end the Write")
		}
	})
}

// CloseRead ends a Read waiting on the connection with the end of the
// stream, as on net.TCPConn.
func TestCloseReadEndsWaitingRead(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		done := make(chan result, 1)
		go func() {
			n, err := blockedRead(c, make([]byte, 16))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedRead")
		if err := c.(interface{ CloseRead() error }).CloseRead(); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.n != 0 || r.err != io.EOF {
			t.Fatalf("Read = %d, %v; want 0, io.EOF", r.n, r.err)
		}
	})
}

// The timer of a side stays armed after a wait that ended before it; the
// next wait must still time out at its own deadline, earlier or later.
func TestDeadlineAfterAWaitThatEndedEarly(t *testing.T) {
	c, s := pair(t, Wrap)
	buf := make([]byte, 8)
	// A wait with a far deadline, ended by data: the timer stays armed
	// for an hour from now.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	go s.Write([]byte("x"))
	if _, err := blockedRead(c, buf); err != nil {
		t.Fatal(err)
	}
	// A nearer deadline must fire at its time, not in an hour.
	start := time.Now()
	c.SetReadDeadline(start.Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the 50ms deadline fired after %v", el)
	}
	// The timer was armed for the 50ms deadline and fired; a wait ended
	// early by data leaves one armed for its deadline; a later deadline
	// must not fire when that one does. The data must come before the
	// earlier deadline, a second away: at 100 ms, a writer goroutine run
	// late on a loaded machine let the read time out.
	first := time.Now().Add(time.Second)
	c.SetReadDeadline(first)
	go s.Write([]byte("y"))
	if _, err := blockedRead(c, buf); err != nil {
		t.Fatal(err)
	}
	later := first.Add(300 * time.Millisecond)
	c.SetReadDeadline(later)
	_, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if early := time.Until(later); early > 0 {
		t.Fatalf("the deadline fired %v before its time, at the earlier wait's", early)
	}
}

// A deadline set between a waiter's check of it and its arming of the
// timer is armed as it is; one that passed centuries ago (further back
// than a time.Duration reaches from the clock's reading) must fire the
// timer at once, as a nearer past one does. The waiter, not yet waiting
// when the deadline was set, gets no other wake-up: a loop of Reads
// racing SetReadDeadline(time.Unix(math.MinInt64/2, 0)) hung within some
// 50 000 rounds while the timer's delay wrapped round to centuries.
func TestTimerArmedForFarPastDeadlineFiresAtOnce(t *testing.T) {
	c, _ := pair(t, Wrap)
	for _, past := range []time.Time{time.Unix(math.MinInt64/2, 0), time.Now().Add(math.MinInt64), time.Unix(1, 0)} {
		s := &c.(*Conn).r
		s.mu.Lock() // as in wait, which arms under the side's lock
		s.arm(monoAt(past))
		s.mu.Unlock()
		limit := time.Now().Add(5 * time.Second)
		for s.timerAt.Load() != 0 {
			if time.Now().After(limit) {
				t.Fatalf("the timer armed for a deadline at %v has not fired after 5s", past)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// A deadline from time.Now (monotonic reading, placed without reading
// the clock) and the same instant as a wall-clock time (placed by its
// distance from now) land at the same point of the mono clock; one
// beyond the clock's range never comes.
func TestMonoAtMonotonicAndWallAgree(t *testing.T) {
	for _, d := range []time.Duration{-time.Hour, -time.Second, 0, time.Millisecond, time.Hour, 50 * 365 * 24 * time.Hour} {
		at := time.Now().Add(d)
		mono, wall := monoAt(at), monoAt(at.Round(0))
		if diff := time.Duration(mono - wall); diff < -time.Second || diff > time.Second {
			t.Errorf("now%+v: monotonic %d, wall %d: %v apart", d, mono, wall, diff)
		}
		if mono == 0 || wall == 0 {
			t.Errorf("now%+v: 0, which means no deadline", d)
		}
	}
	if got := monoAt(time.Now().Add(math.MaxInt64)); got != math.MaxInt64 {
		t.Errorf("a deadline past the clock's range is %d, want math.MaxInt64", got)
	}
	if got := monoAt(monoBase); got != -1 {
		t.Errorf("monoBase itself is %d, want -1 (0 means none)", got)
	}
}
