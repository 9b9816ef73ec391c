package sockio

import (
	"errors"
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
