package proxy

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// modelCopyRequestHeader is the plain statement of copyRequestHeader:
// copy everything, delete what the Connection tokens name, delete the
// fixed list, put back "TE: trailers".
func modelCopyRequestHeader(src http.Header) http.Header {
	dst := http.Header{}
	for k, vv := range src {
		dst[k] = vv
	}
	for _, f := range dst["Connection"] {
		for _, sf := range strings.Split(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(dst, http.CanonicalHeaderKey(sf))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(dst, k)
	}
	for _, v := range src["Te"] {
		if httpguts.HeaderValuesContainsToken([]string{v}, "trailers") {
			dst["Te"] = []string{"trailers"}
			break
		}
	}
	return dst
}

// modelCopyResponseHeader is the plain statement of copyResponseHeader:
// a set of the canonical Connection tokens, a linear scan of the fixed
// list, and values appended to what dst has.
func modelCopyResponseHeader(dst, src http.Header) {
	skip := map[string]bool{}
	for _, f := range src["Connection"] {
		for _, sf := range strings.Split(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				skip[http.CanonicalHeaderKey(sf)] = true
			}
		}
	}
	for k, vv := range src {
		hop := false
		for _, h := range hopHeaders {
			hop = hop || h == k
		}
		if hop || skip[k] {
			continue
		}
		dst[k] = append(append([]string(nil), dst[k]...), vv...)
	}
}

// randomHeader draws a header map from names that matter to hop-by-hop
// removal: the fixed list, in canonical form and not, names a
// Connection value may list, and non-ASCII look-alikes.
func randomHeader(rng *rand.Rand) http.Header {
	names := []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"keep-alive", "te", "TE", "X-Hop", "X-Keep", "X-Other", "Accept",
		"Content-Type", "Traceparent", "X-Request-Id", "User-Agent", "X_Under",
		"\u212aeep-Alive", "Trailers", "Upgrade-Insecure-Requests", "A", "B",
		"C", "D", "E", "F", "G", "H",
	}
	tokens := []string{
		"close", "keep-alive", "Keep-Alive", "KEEP-ALIVE", "Upgrade", "x-hop",
		"X-Hop", " X-Other ", "te", "TE", "trailer", "x_under", "X_Under", "",
		"\u212aeep-alive", "accept", "a", "HTTP2-Settings", "proxy-connection",
		"x-request-id", "User-Agent", "x-forwarded-for",
	}
	teValues := []string{"trailers", "gzip, trailers;q=0.5", "TRAILERS", "deflate", "", "trailers, deflate"}
	h := http.Header{}
	for n := rng.IntN(12); n > 0; n-- {
		k := names[rng.IntN(len(names))]
		switch {
		case k == "Connection":
			var parts []string
			for m := rng.IntN(4); m >= 0; m-- {
				parts = append(parts, tokens[rng.IntN(len(tokens))])
			}
			h[k] = append(h[k], strings.Join(parts, ","))
		case k == "Te" || k == "te":
			h[k] = append(h[k], teValues[rng.IntN(len(teValues))])
		default:
			h[k] = append(h[k], "v"+k)
		}
	}
	return h
}

func cloneHeader(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	c := http.Header{}
	for k, vv := range h {
		c[k] = append([]string(nil), vv...)
	}
	return c
}

func TestCopyRequestHeaderMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		src := randomHeader(rng)
		before := cloneHeader(src)
		add := addedRequestHeaders[:rng.IntN(len(addedRequestHeaders)+1)]
		if rng.IntN(2) == 0 {
			// Names the copy may drop for a Connection token.
			add = []string{"X-Hop", "Accept", "X-Other", "X_Under"}[:rng.IntN(5)]
		}
		got, found := copyRequestHeader(src, add)
		want := modelCopyRequestHeader(src)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("copyRequestHeader(%q)\n got %q\nwant %q", src, got, want)
		}
		for i, k := range add {
			if _, ok := want[k]; ok != (found&(1<<i) != 0) {
				t.Fatalf("copyRequestHeader(%q, %q) reports %s found: %v", src, add, k, !ok)
			}
		}
		if found>>len(add) != 0 {
			t.Fatalf("copyRequestHeader(%q, %q) found = %b", src, add, found)
		}
		if !reflect.DeepEqual(src, before) {
			t.Fatalf("copyRequestHeader changed its source: %q, was %q", src, before)
		}
	}
}

func TestCopyResponseHeaderMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 5000; i++ {
		src := randomHeader(rng)
		dst := randomHeader(rng)
		before := cloneHeader(src)
		want := cloneHeader(dst)
		modelCopyResponseHeader(want, src)
		copyResponseHeader(dst, src)
		if !reflect.DeepEqual(dst, want) {
			t.Fatalf("copyResponseHeader(%q)\n got %q\nwant %q", src, dst, want)
		}
		if !reflect.DeepEqual(src, before) {
			t.Fatalf("copyResponseHeader changed its source: %q, was %q", src, before)
		}
	}
}

func TestIsHopMatchesTheList(t *testing.T) {
	for _, k := range hopHeaders {
		if !isHop(k) {
			t.Errorf("isHop(%q) = false", k)
		}
		if isHop(strings.ToLower(k)) || isHop(strings.ToUpper(k)) {
			t.Errorf("isHop matches %q in another case", k)
		}
		if !isHopToken(strings.ToLower(k)) || !isHopToken(strings.ToUpper(k)) {
			t.Errorf("isHopToken misses %q in another case", k)
		}
	}
	for _, k := range []string{"", "T", "Tf", "Upgradf", "Trailers", "X-Connection", "Keep-Alivf", "Proxy-Authorizatio", "\u212aeep-Alive"} {
		if isHop(k) || isHopToken(k) {
			t.Errorf("%q taken for hop-by-hop", k)
		}
	}
}

// An HTTP/2 request (no Connection header) and an HTTP/1.1 keep-alive one
// are copied with one allocation for the map's group and none for
// hop-by-hop removal.
func TestCopyRequestHeaderAllocations(t *testing.T) {
	for _, src := range []http.Header{
		{"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "User-Agent": {"h2load"}},
		{"Accept": {"*/*"}, "Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}, "User-Agent": {"curl"}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}},
	} {
		got := testing.AllocsPerRun(100, func() {
			h, _ := copyRequestHeader(src, addedRequestHeaders[:])
			h["X-Forwarded-Proto"] = protoHTTP
		})
		// The map itself and its one group.
		if got > 2 {
			t.Errorf("copyRequestHeader(%q): %v allocations, want at most 2", src, got)
		}
	}
}

func TestAppendForwardedForKeepsTheList(t *testing.T) {
	for _, prior := range [][]string{nil, {"10.0.0.1"}, {"10.0.0.1", "10.0.0.2, 10.0.0.3"}} {
		h := http.Header{}
		if prior != nil {
			h[hdrForwardedFor] = prior
		}
		appendForwardedFor(h, h[hdrForwardedFor], "192.0.2.7:5555", make([]string, 1))
		want := "192.0.2.7"
		if len(prior) > 0 {
			want = strings.Join(prior, ", ") + ", " + want
		}
		if got := h[hdrForwardedFor]; len(got) != 1 || got[0] != want {
			t.Errorf("after %q: X-Forwarded-For = %q, want %q", prior, got, want)
		}
	}
	h := http.Header{hdrForwardedFor: {"10.0.0.1"}}
	appendForwardedFor(h, h[hdrForwardedFor], "not-an-address", make([]string, 1))
	if got := h[hdrForwardedFor]; len(got) != 1 || got[0] != "10.0.0.1" {
		t.Errorf("an unparsable remote address changed X-Forwarded-For to %q", got)
	}
}

// Each request without an id gets its own: 32 lowercase hex digits.
func TestOutboundHeaderRequestIDs(t *testing.T) {
	r, err := http.NewRequest(http.MethodGet, "http://svc/", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.7:5555"
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		f := &forwarding{r: r, rt: &route{}}
		h := f.outboundHeader()
		ids := h[hdrRequestID]
		if len(ids) != 1 || len(ids[0]) != 32 || strings.Trim(ids[0], "0123456789abcdef") != "" {
			t.Fatalf("X-Request-Id = %q", ids)
		}
		if seen[ids[0]] {
			t.Fatalf("X-Request-Id %s repeated", ids[0])
		}
		seen[ids[0]] = true
		if got := h[hdrForwardedFor]; len(got) != 1 || got[0] != "192.0.2.7" {
			t.Fatalf("X-Forwarded-For = %q", got)
		}
	}
	if len(r.Header) != 0 {
		t.Fatalf("the inbound header was changed: %q", r.Header)
	}
}

// adoptingWriter adopts header maps as h1server's and h2server's writers
// do, while its header has not been asked for.
type adoptingWriter struct {
	*httptest.ResponseRecorder
	asked bool
}

func (w *adoptingWriter) Header() http.Header {
	w.asked = true
	return w.ResponseRecorder.Header()
}

func (w *adoptingWriter) AdoptHeader(h http.Header) bool {
	if w.asked {
		return false
	}
	w.asked = true
	w.ResponseRecorder.HeaderMap = h
	return true
}

// The header a writer ends with is the same whether it adopted the
// upstream's map or had it copied: the model's copy into an empty map.
func TestResponseHeaderAdoptedOrCopiedMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 5000; i++ {
		src := randomHeader(rng)
		want := http.Header{}
		modelCopyResponseHeader(want, src)

		copied := httptest.NewRecorder()
		if got := responseHeader(copied, cloneHeader(src)); !reflect.DeepEqual(got, want) || !reflect.DeepEqual(copied.Header(), want) {
			t.Fatalf("responseHeader(plain writer, %q)\n got %q\nwant %q", src, got, want)
		}

		adopting := &adoptingWriter{ResponseRecorder: httptest.NewRecorder()}
		own := cloneHeader(src)
		got := responseHeader(adopting, own)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(adopting.ResponseRecorder.HeaderMap, want) {
			t.Fatalf("responseHeader(adopting writer, %q)\n got %q\nwant %q", src, got, want)
		}
		if reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(own).UnsafePointer() {
			t.Fatalf("responseHeader(adopting writer) made a new map instead of adopting the upstream's")
		}
	}
}

// A writer whose header was already asked for (an interim 1xx, a local
// edit) refuses the map: the upstream's header is copied into its own.
func TestResponseHeaderCopiedWhenWriterHeaderInUse(t *testing.T) {
	w := &adoptingWriter{ResponseRecorder: httptest.NewRecorder()}
	w.Header().Set("Link", "</style.css>; rel=preload")
	src := http.Header{"Content-Type": {"text/plain"}, "Connection": {"x-drop"}, "X-Drop": {"1"}}
	got := responseHeader(w, src)
	want := http.Header{"Link": {"</style.css>; rel=preload"}, "Content-Type": {"text/plain"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if len(src) != 3 {
		t.Fatalf("the upstream's map was changed: %q", src)
	}
}

// Edited in place, a header becomes what the copy would have been, and
// the same names are reported found.
func TestStripRequestHeaderMatchesCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 5000; i++ {
		src := randomHeader(rng)
		add := addedRequestHeaders[:rng.IntN(len(addedRequestHeaders)+1)]
		if rng.IntN(2) == 0 {
			add = []string{"X-Hop", "Accept", "X-Other", "X_Under"}[:rng.IntN(5)]
		}
		want, wantFound := copyRequestHeader(src, add)
		got := cloneHeader(src)
		found := stripRequestHeader(got, add)
		if !reflect.DeepEqual(got, want) || found != wantFound {
			t.Fatalf("stripRequestHeader(%q, %q)\n got %q, found %b\nwant %q, found %b", src, add, got, found, want, wantFound)
		}
	}
}

// X-Forwarded-For field lines a client sent empty add no element to the
// list the client's address is appended to: RFC 9110 §5.6.1 has a sender
// generate no empty list element, and a reader that takes the list's
// first element as the client's address read "" from ", 127.0.0.1".
func TestForwardedForSkipsEmptyFieldLines(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values(hdrForwardedFor)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	for _, c := range []struct {
		sent []string
		want string
	}{
		{[]string{""}, "127.0.0.1"},
		{[]string{" "}, "127.0.0.1"},
		{[]string{"", ""}, "127.0.0.1"},
		{[]string{"10.0.0.1", "", "10.0.0.2"}, "10.0.0.1, 10.0.0.2, 127.0.0.1"},
		{[]string{"10.0.0.1", ""}, "10.0.0.1, 127.0.0.1"},
	} {
		for _, proto := range []string{"h1", "h2c"} {
			if proto == "h2c" && c.sent[0] == " " {
				continue // malformed in HTTP/2 (RFC 9113 §8.2.1)
			}
			req, err := http.NewRequest(http.MethodGet, h.url("/"), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header[hdrForwardedFor] = c.sent
			resp, err := h.client(proto).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if got := <-seen; len(got) != 1 || got[0] != c.want {
				t.Errorf("%s: X-Forwarded-For %q sent, upstream got %q, want %q", proto, c.sent, got, c.want)
			}
		}
	}
}

// A request whose x-request-id is empty is given an id as a request
// without one is: an empty one was kept, so the upstream, and the access
// log, had no id for it.
func TestEmptyRequestIDIsReplaced(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values(hdrRequestID)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	for _, c := range []struct {
		proto string
		sent  []string
	}{{"h1", []string{""}}, {"h1", []string{" \t"}}, {"h2c", []string{""}}} {
		req, err := http.NewRequest(http.MethodGet, h.url("/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[hdrRequestID] = c.sent
		resp, err := h.client(c.proto).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if got := <-seen; len(got) != 1 || len(got[0]) != 32 || strings.Trim(got[0], "0123456789abcdef") != "" {
			t.Errorf("%s: x-request-id %q sent, upstream got %q, want a generated id", c.proto, c.sent, got)
		}
	}
	// A client's id is kept.
	readAll(t, mustGet(t, h.h1, h.url("/"), "X-Request-Id", "abc-123"))
	if got := <-seen; len(got) != 1 || got[0] != "abc-123" {
		t.Errorf("upstream got x-request-id %q, want the client's", got)
	}
}

// A request whose X-Forwarded-Proto is empty is given the listener's
// scheme, as one without any is: the empty value was kept, so the
// upstream had no scheme for the request. A client's scheme is kept.
func TestEmptyForwardedProtoIsReplaced(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values(hdrForwardedProto)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	for _, c := range []struct {
		proto string
		sent  []string
		want  string
	}{
		{"h1", []string{""}, "http"},
		{"h1", []string{" "}, "http"},
		{"h2c", []string{""}, "http"},
		{"h1", []string{"https"}, "https"},
	} {
		req, err := http.NewRequest(http.MethodGet, h.url("/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[hdrForwardedProto] = c.sent
		resp, err := h.client(c.proto).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if got := <-seen; len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: X-Forwarded-Proto %q sent, upstream got %q, want %q", c.proto, c.sent, got, c.want)
		}
	}
}

// A request with several x-request-id lines goes up with the first: the
// access log records the first, and an upstream reading another (or all,
// joined) would trace the request under an id the proxy never logged.
func TestOnlyTheFirstRequestIDGoesUp(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values(hdrRequestID)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	for _, proto := range []string{"h1", "h2c"} {
		req, err := http.NewRequest(http.MethodGet, h.url("/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header[hdrRequestID] = []string{"first", "second", "third"}
		resp, err := h.client(proto).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if got := <-seen; len(got) != 1 || got[0] != "first" {
			t.Errorf("%s: upstream got x-request-id %q, want [first]", proto, got)
		}
	}
}
