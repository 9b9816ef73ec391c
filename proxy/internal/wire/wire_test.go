package wire

import (
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseDecimal(t *testing.T) {
	ok := map[string]int64{"0": 0, "7": 7, "0042": 42, "123456789012345678": 123456789012345678}
	for in, want := range ok {
		if got, good := ParseDecimal(in); !good || got != want {
			t.Errorf("ParseDecimal(%q) = %d, %v; want %d", in, got, good, want)
		}
	}
	for _, in := range []string{"", "+1", "-1", " 1", "1 ", "1_000", "0x10", "1e3", "١", "1234567890123456789", "99999999999999999999"} {
		if got, good := ParseDecimal(in); good {
			t.Errorf("ParseDecimal(%q) = %d, accepted", in, got)
		}
	}
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "12", "+1", "", "999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := ParseDecimal(s)
		if !ok {
			return
		}
		// What it accepts is what strconv reads as a plain decimal.
		want, err := strconv.ParseInt(s, 10, 64)
		if err != nil || want != n || n < 0 || s[0] == '+' || s[0] == '-' {
			t.Fatalf("ParseDecimal(%q) = %d; strconv: %d, %v", s, n, want, err)
		}
	})
}

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"chunked", "CHUNKED", true},
		{"Content-Length", "content-length", true},
		{"100-continue", "100-Continue", true},
		{"keep-alive", "keep-alivE", true},
		{"chunked", "chunke", false},
		{"k", "\u212a", false},           // the Kelvin sign folds to k in Unicode only
		{"kelvin", "\u212aelvin", false}, // different lengths too
		{"a\xffb", "A\xffB", true},       // non-ASCII bytes match only themselves
		{"a\xffb", "a\xfeb", false},
		{"@", "`", false}, // neighbours of the letters are not folded
		{"[", "{", false},
	} {
		if got := EqualFold(c.a, c.b); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
