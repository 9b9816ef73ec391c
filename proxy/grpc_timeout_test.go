package proxy

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	ok := map[string]time.Duration{
		"1H":        time.Hour,
		"2M":        2 * time.Minute,
		"30S":       30 * time.Second,
		"100m":      100 * time.Millisecond,
		"5u":        5 * time.Microsecond,
		"99999999n": 99999999,
		"0m":        0,
		"00000001S": time.Second,
		"99999999H": maxDuration, // saturates instead of overflowing
	}
	for in, want := range ok {
		got, err := parseGRPCTimeout(in)
		if err != nil || got != want {
			t.Errorf("parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "S", "1", "123456789S", "1s", "-1S", "1.5S", " 1S", "1S ", "1x", "1HH"} {
		if _, err := parseGRPCTimeout(in); err == nil {
			t.Errorf("parse(%q) accepted", in)
		}
	}
}

func TestFormatGRPCTimeoutRoundTripsAndRoundsUp(t *testing.T) {
	for _, d := range []time.Duration{1, 999, 99999999, 100000000, 1500 * time.Millisecond, 3 * time.Hour, 200*time.Millisecond + 1, maxDuration, maxDuration - 1, maxDuration - time.Minute} {
		s := formatGRPCTimeout(d)
		back, err := parseGRPCTimeout(s)
		if err != nil {
			t.Fatalf("format(%v) = %q does not parse: %v", d, s, err)
		}
		if back < d {
			t.Errorf("format(%v) = %q = %v: rounds down", d, s, back)
		}
		// Rounding up loses at most one unit of the chosen precision,
		// which is at most 1/99999999 of the value... plus one unit.
		if back-d > d/10000000+time.Microsecond && back-d > time.Millisecond {
			t.Errorf("format(%v) = %q = %v: too coarse", d, s, back)
		}
	}
	if s := formatGRPCTimeout(-time.Second); s != "1n" {
		t.Errorf("expired deadline formats as %q", s)
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":     "plain text",
		"100%":           "100%25",
		"naïve":          "na%C3%AFve",
		"line\nbreak":    "line%0Abreak",
		"tab\tand~tilde": "tab%09and~tilde",
	} {
		if got := encodeGRPCMessage(in); got != want {
			t.Errorf("encode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":               true,
		"application/grpc+proto":         true,
		"application/grpc;charset=utf-8": true,
		"application/grpc-web":           false,
		"application/json":               false,
		"":                               false,
	} {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		if got := isGRPC(h); got != want {
			t.Errorf("isGRPC(%q) = %v", ct, got)
		}
	}
}

func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1H", "100m", "99999999n", "", "1", "123456789S", "0u", "\xff", "99999999H"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseGRPCTimeout(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("parse(%q) = %v: negative", s, d)
		}
		if len(s) < 2 || len(s) > 9 {
			t.Fatalf("parse(%q) accepted a value of %d bytes", s, len(s))
		}
		// Whatever parses re-encodes to something that parses to at least
		// the same duration (never a shorter deadline upstream).
		// Saturated values included: the time remaining on a route
		// without a timeout is within a unit of the largest duration.
		back, err := parseGRPCTimeout(formatGRPCTimeout(d))
		if err != nil || (d > 0 && back < d) {
			t.Fatalf("re-encoding %v: %v %v", d, back, err)
		}
	})
}

func FuzzCopyRequestHeader(f *testing.F) {
	f.Add("Keep-Alive, X-A", "X-A", "trailers")
	f.Add("close", "", "gzip, trailers;q=1")
	f.Fuzz(func(t *testing.T, conn, extra, te string) {
		in := http.Header{"Connection": {conn}, "Te": {te}, "X-Keep": {"v"}}
		if extra != "" {
			in[http.CanonicalHeaderKey(extra)] = []string{"e"}
		}
		out, _ := copyRequestHeader(in, addedRequestHeaders[:])
		if want := modelCopyRequestHeader(in); !reflect.DeepEqual(out, want) {
			t.Fatalf("copyRequestHeader(%q) = %q, want %q", in, out, want)
		}
		for _, k := range hopHeaders {
			if k == "Te" {
				if v, ok := out["Te"]; ok && (len(v) != 1 || v[0] != "trailers") {
					t.Fatalf("Te forwarded as %q", v)
				}
				continue
			}
			if _, ok := out[k]; ok {
				t.Fatalf("hop-by-hop %s forwarded", k)
			}
		}
		if in.Get("Connection") != conn {
			t.Fatal("inbound header mutated")
		}
		stripRequestHeader(in, addedRequestHeaders[:])
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("stripRequestHeader made %q, the copy %q", in, out)
		}
	})
}
