package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// parseFieldsModel is parseFields written plainly, one check at a time
// with the standard library's and httpguts' functions: the model the
// single-pass parser is held to.
func parseFieldsModel(s string) (http.Header, error) {
	h := http.Header{}
	for {
		line, rest := wire.NextLine(s)
		s = rest
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, errors.New("h1client: obsolete line folding in response header")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("h1client: malformed header line %q", clip(line))
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("h1client: invalid header field name %q", clip(k))
		}
		v = strings.Trim(v, " \t")
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("h1client: invalid header field value for %q", clip(k))
		}
		k = http.CanonicalHeaderKey(k)
		h[k] = append(h[k], v)
	}
}

// checkParseFields parses block with room for nvals values given, and
// compares the result with the model's.
func checkParseFields(t *testing.T, block string, nvals int) {
	t.Helper()
	want, wantErr := parseFieldsModel(block)
	n := countLines(block)
	h := make(http.Header, n)
	vals := make([]string, nvals)
	used, err := parseFields(block, h, n, vals)
	switch {
	case wantErr != nil || err != nil:
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("parseFields(%q): error %v, want %v", block, err, wantErr)
		}
		return
	case !reflect.DeepEqual(h, want):
		t.Fatalf("parseFields(%q) = %q, want %q", block, h, want)
	case used < 0 || used > nvals || used > len(h):
		t.Fatalf("parseFields(%q) used %d of %d values for %d keys", block, used, nvals, len(h))
	}
	for i := range vals[used:] {
		if vals[used+i] != "" {
			t.Fatalf("parseFields(%q) wrote past the %d values it reports used", block, used)
		}
	}
	// Appending to one key's values changes no other key's.
	for k := range h {
		h[k] = append(h[k], "appended")
	}
	for k, vv := range h {
		if !reflect.DeepEqual(vv[:len(vv)-1], want[k]) {
			t.Fatalf("parseFields(%q): after appending, %s is %q, want %q", block, k, vv[:len(vv)-1], want[k])
		}
	}
}

var fieldBlocks = []string{
	"\r\n",
	"Content-Type: text/plain\r\nDate: Fri, 27 Nov 2026 07:00:00 GMT\r\nContent-Length: 16\r\n\r\n",
	"content-type: a\r\nCONTENT-LENGTH: 1\r\nx-request-id:  id \t\r\ncOnTeNt-TyPe: b\r\n\r\n",
	"Set-Cookie: a=1\nSet-Cookie: b=2\nVary: x\nvary: y\nA: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\nG: 7\nH: 8\n\n",
	"X-: a\r\n-x: b\r\na--b: c\r\n1abc: d\r\nx_y.z~w: e\r\n\r\n",
	"X:\r\nY: \t \r\nZ:\tz\t\r\n\r\n",
	"X: caf\xc3\xa9 \x80\xff\r\n\r\n",
	strings.Repeat("abcdefghij-", 8) + ": long name, lower case\r\n\r\n",
	strings.Repeat("Abcdefghij-", 8) + ": long name, canonical\r\n\r\n",
	"Bad Name: x\r\n\r\n",
	"Bad\x00Name: x\r\n\r\n",
	"Caf\xc3\xa9: x\r\n\r\n",
	"Name : x\r\n\r\n",
	": no name\r\n\r\n",
	"no colon\r\n\r\n",
	"A: 1\r\n folded\r\n\r\n",
	"\tA: 1\r\n\r\n",
	"X: a\x00b\r\n\r\n",
	"X: a\rb\r\n\r\n",
	"X: a\x7f\r\n\r\n",
	"X: a\x01\r\n\r\n",
	"X: a\r\r\n\r\n",
	"Bad Name: a\x00\r\n\r\n",
	"A: 1\r\nB",
	"A: 1",
}

func TestParseFieldsMatchesModel(t *testing.T) {
	for _, block := range fieldBlocks {
		for _, nvals := range []int{0, 1, 3, 7} {
			checkParseFields(t, block, nvals)
		}
	}
}

// FuzzParseFields holds the single-pass field parser to the plain model
// on arbitrary blocks, with any room for values.
func FuzzParseFields(f *testing.F) {
	for _, block := range fieldBlocks {
		f.Add(block, uint8(7))
	}
	f.Fuzz(func(t *testing.T, block string, nvals uint8) {
		checkParseFields(t, block, int(nvals%16))
	})
}

// keepingHooks keeps the header of every interim response.
type keepingHooks struct{ interim []textproto.MIMEHeader }

func (h *keepingHooks) GotConn() {}

func (h *keepingHooks) Got1xxResponse(_ int, header textproto.MIMEHeader) error {
	h.interim = append(h.interim, header)
	return nil
}

// Values share arrays (the response's own, then allocated ones): an
// interim head kept by a hook, the final head and the trailers each keep
// their values, and appending to one field's values changes no other.
func TestResponseValuesKeptApart(t *testing.T) {
	const interim = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nX-Hint: h\r\n\r\n"
	for _, c := range []struct {
		name, head string
		header     http.Header
	}{
		// Three fields: the response has room left for a trailer.
		{"few fields", "A: 1\r\n", http.Header{"A": {"1"}, "Transfer-Encoding": {"chunked"}}},
		{"more fields than the response holds",
			"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nA: 1b\r\nH: 8\r\n",
			http.Header{"A": {"1", "1b"}, "B": {"2"}, "C": {"3"}, "D": {"4"}, "E": {"5"}, "F": {"6"}, "G": {"7"}, "H": {"8"}, "Transfer-Encoding": {"chunked"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := interim + "HTTP/1.1 200 OK\r\n" + c.head +
				"Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: t\r\nX-U: u1\r\nX-U: u2\r\n\r\n"
			rs := startRaw(t, func(conn net.Conn, br *bufio.Reader, _ int) {
				for {
					if _, _, err := readRequest(br); err != nil {
						return
					}
					if _, err := io.WriteString(conn, resp); err != nil {
						return
					}
				}
			})
			tr := newTransport(t)
			for i := range 2 { // a dialled connection, then the idle one
				var h keepingHooks
				req := mustRequest(t, "GET", "http://"+rs.addr, nil)
				r, err := tr.RoundTripHooks(context.Background(), req, &h, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(r.Body)
				r.Body.Close()
				if err != nil || string(b) != "hello" {
					t.Fatalf("round trip %d: body %q, %v", i, b, err)
				}
				wantInterim := textproto.MIMEHeader{"Link": {"</a.css>"}, "X-Hint": {"h"}}
				if len(h.interim) != 1 || !reflect.DeepEqual(h.interim[0], wantInterim) {
					t.Fatalf("round trip %d: interim headers %v, want [%v]", i, h.interim, wantInterim)
				}
				if !reflect.DeepEqual(r.Header, c.header) {
					t.Fatalf("round trip %d: header %v, want %v", i, r.Header, c.header)
				}
				wantTrailer := http.Header{"X-T": {"t"}, "X-U": {"u1", "u2"}}
				if !reflect.DeepEqual(r.Trailer, wantTrailer) {
					t.Fatalf("round trip %d: trailer %v, want %v", i, r.Trailer, wantTrailer)
				}
				for _, hh := range []map[string][]string{h.interim[0], r.Header, r.Trailer} {
					for k := range hh {
						hh[k] = append(hh[k], "appended")
					}
				}
				for k, vv := range c.header {
					if got := r.Header[k]; !reflect.DeepEqual(got[:len(got)-1], vv) {
						t.Fatalf("round trip %d: after appending, %s is %q, want %q", i, k, got[:len(got)-1], vv)
					}
				}
				for k, vv := range wantTrailer {
					if got := r.Trailer[k]; !reflect.DeepEqual(got[:len(got)-1], vv) {
						t.Fatalf("round trip %d: after appending, trailer %s is %q, want %q", i, k, got[:len(got)-1], vv)
					}
				}
			}
			if n := rs.accepted.Load(); n != 1 {
				t.Fatalf("server saw %d connections, want 1", n)
			}
		})
	}
}
