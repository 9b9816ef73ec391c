package wire

// ParseDecimal parses 1*DIGIT, the syntax of a Content-Length value (RFC
// 9110 §8.6): no sign, no spaces, no other characters. It takes at most
// 18 digits, so the result cannot overflow an int64; a longer value is
// refused, as no message that long can be sent anyway.
func ParseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// EqualFold is strings.EqualFold for ASCII only: protocol elements are
// case-insensitive in ASCII, and Unicode folding would let "\u212a" (the
// Kelvin sign) stand for "k", which CanonicalHeaderKey does not fold.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
