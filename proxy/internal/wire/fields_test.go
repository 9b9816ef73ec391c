package wire

import (
	"math/rand/v2"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"testing"
)

// CanonicalKey and Canonicalize agree with textproto for tokens in any
// case, including every interned name, and an interned name comes back
// as the same canonical string whatever the case it arrived in.
func TestCanonicalKeyAsTextproto(t *testing.T) {
	const tokenBytes = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~"
	rng := rand.New(rand.NewPCG(1, 2))
	var names []string
	src, err := os.ReadFile("fields.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range regexp.MustCompile(`case "([^"]+)":`).FindAllStringSubmatch(string(src), -1) {
		names = append(names, n[1])
	}
	if len(names) < 40 {
		t.Fatalf("found %d interned names in the source", len(names))
	}
	for i := 0; i < 20000; i++ {
		var k string
		if i < 3*len(names) {
			k = names[i%len(names)]
			switch i / len(names) {
			case 1:
				k = strings.ToLower(k)
			case 2:
				k = strings.ToUpper(k)
			}
		} else {
			b := make([]byte, 1+rng.IntN(80))
			for j := range b {
				b[j] = tokenBytes[rng.IntN(len(tokenBytes))]
			}
			k = string(b)
		}
		want := textproto.CanonicalMIMEHeaderKey(k)
		if got := CanonicalKey(k); got != want {
			t.Fatalf("CanonicalKey(%q) = %q, want %q", k, got, want)
		}
		if k != want {
			if got := Canonicalize(k); got != want {
				t.Fatalf("Canonicalize(%q) = %q, want %q", k, got, want)
			}
		}
	}
	for _, n := range names {
		if textproto.CanonicalMIMEHeaderKey(n) != n {
			t.Errorf("interned name %q is not canonical", n)
		}
		lower := strings.ToLower(n)
		if lower == n {
			continue
		}
		if a := testing.AllocsPerRun(10, func() { Canonicalize(lower) }); a != 0 {
			t.Errorf("Canonicalize(%q): %v allocations, want none for an interned name", lower, a)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{"": "", " \t": "", " a b\t": "a b", "a": "a", "\ta\t \t": "a", " \x00 ": "\x00"} {
		if got := TrimOWS(in); got != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", in, got, want)
		}
	}
}
