package wire

import "testing"

func TestValidAuthority(t *testing.T) {
	for s, want := range map[string]bool{
		"":                   true, // HTTP/1.0 without a host; required is the servers' call
		"a.example":          true,
		"a.example:80":       true,
		"a.example:":         true, // RFC 3986: port = *DIGIT
		"A.Example.":         true,
		"10.0.0.1:8080":      true,
		"[::1]":              true,
		"[::1]:8080":         true,
		"[fe80::1%25en0]:80": true,
		"a.example:80:80":    false,
		"a.example::80":      false,
		"a.example:abc":      false,
		"a.example:+80":      false,
		"::1":                false,
		"[::1]x":             false,
		"[::1]:80:80":        false,
		"[::1":               false,
		"a@b.example":        false,
		"a b":                false,
	} {
		if got := ValidAuthority(s); got != want {
			t.Errorf("ValidAuthority(%q) = %v, want %v", s, got, want)
		}
	}
}
