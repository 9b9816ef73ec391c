package proxy

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// header builds a header from name, value pairs.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// resetWait takes the first of the policy's reset headers that parses,
// in the policy's order: a number of seconds or an HTTP-date (seconds),
// whole seconds since the epoch (unix_timestamp). No header, or an
// interval of zero or past, leaves the wait to the back-off (-1); one
// over resetMax refuses the retry; the wait is spread from the interval
// to 1.5 times it, never past resetMax.
func TestResetWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := &retryPolicy{
		resetHeaders: []resetHeader{{key: "Retry-After"}, {key: "X-Ratelimit-Reset", timestamp: true}},
		resetMax:     time.Minute,
	}
	top := func(n int64) int64 { return n - 1 } // the longest wait
	cases := []struct {
		name string
		h    http.Header
		wait time.Duration // with the jitter at its top; -1: the back-off
		ok   bool
	}{
		{"none", header(), -1, true},
		{"seconds", header("Retry-After", "10"), 15*time.Second - 1, true},
		{"seconds with spaces", header("Retry-After", " 10 "), 15*time.Second - 1, true},
		{"first value of several", header("Retry-After", "10", "Retry-After", "20"), 15*time.Second - 1, true},
		{"jitter stops at max_interval", header("Retry-After", "50"), time.Minute - 1, true},
		{"at max_interval", header("Retry-After", "60"), time.Minute, true},
		{"over max_interval", header("Retry-After", "61"), 0, false},
		{"IMF-fixdate", header("Retry-After", "Sun, 01 Mar 2026 12:00:10 GMT"), 15*time.Second - 1, true},
		{"RFC 850 date", header("Retry-After", "Sunday, 01-Mar-26 12:00:10 GMT"), 15*time.Second - 1, true},
		{"asctime date", header("Retry-After", "Sun Mar  1 12:00:10 2026"), 15*time.Second - 1, true},
		{"date over max_interval", header("Retry-After", "Sun, 01 Mar 2026 13:00:00 GMT"), 0, false},
		{"timestamp", header("X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+10, 10)), 15*time.Second - 1, true},
		{"timestamp now", header("X-Ratelimit-Reset", strconv.FormatInt(now.Unix(), 10)), -1, true},
		{"timestamp as a date", header("X-Ratelimit-Reset", "Sun, 01 Mar 2026 12:00:10 GMT"), -1, true},
		{"first that parses wins", header("Retry-After", "later", "X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+2, 10)), 3*time.Second - 1, true},
		{"first that parses wins, over max_interval", header("Retry-After", "120", "X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+2, 10)), 0, false},
		{"first that parses names no wait", header("Retry-After", "0", "X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+2, 10)), -1, true},
		{"sign", header("Retry-After", "+5"), -1, true},
		{"exponent", header("Retry-After", "1e3"), -1, true},
		{"huge", header("Retry-After", "184467440737095516160"), 0, false},
		{"huge timestamp", header("X-Ratelimit-Reset", "184467440737095516160"), 0, false},
		{"empty", header("Retry-After", ""), -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wait, ok := p.resetWait(tc.h, now, top)
			if wait != tc.wait || ok != tc.ok {
				t.Fatalf("resetWait = %v, %v; want %v, %v", wait, ok, tc.wait, tc.ok)
			}
			if !ok || wait < 0 {
				return
			}
			// At the bottom of the jitter the wait is the interval.
			low, _ := p.resetWait(tc.h, now, func(int64) int64 { return 0 })
			if low > wait || low < wait*2/3 {
				t.Fatalf("lowest wait %v, highest %v: not [interval, 1.5 × interval)", low, wait)
			}
		})
	}
}

// parseReset never panics, and reads a run of digits as the seconds it
// says, saturating.
func FuzzParseReset(f *testing.F) {
	for _, s := range []string{"0", "120", " 5", "1.5", "+1", "-1", "Sun, 06 Nov 1994 08:49:37 GMT", "99999999999999999999999", ""} {
		f.Add(s, false)
		f.Add(s, true)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, v string, timestamp bool) {
		d, ok := parseReset(v, timestamp, now)
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || v[0] == '+' {
			return
		}
		if !ok {
			t.Fatalf("%q: digits not read", v)
		}
		if !timestamp && n <= uint64(maxResetSeconds) && d != time.Duration(n)*time.Second {
			t.Fatalf("%q read as %v", v, d)
		}
		if !timestamp && n > uint64(maxResetSeconds) && d != time.Duration(maxResetSeconds)*time.Second {
			t.Fatalf("%q read as %v, want the largest", v, d)
		}
	})
}
