package proxy

import (
	"net/http"
	"net/url"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/normpath"
)

// escapedSlashAction is listeners.path_with_escaped_slashes, compiled:
// what becomes of a request whose path has "%2F" or "%5C" (either case).
// Normalization leaves an escaped slash inside its segment (RFC 3986
// makes "%2F" data, not a separator), so "/public%2F..%2Fadmin" is
// routed as written and passes a route that denies "/admin", while an
// upstream that decodes "%2F" before it resolves dot segments serves
// "/admin". This is Envoy's path_with_escaped_slashes_action, which
// likewise acts before the path is normalized.
type escapedSlashAction uint8

const (
	escapedSlashesKeep     escapedSlashAction = iota // routed and forwarded as it came
	escapedSlashesReject                             // answered 400
	escapedSlashesForward                            // unescaped, normalized, routed
	escapedSlashesRedirect                           // answered 307 to the unescaped path
)

func compileEscapedSlashes(a config.PathWithEscapedSlashes) escapedSlashAction {
	switch a {
	case config.PathWithEscapedSlashesReject:
		return escapedSlashesReject
	case config.PathWithEscapedSlashesUnescapeAndForward:
		return escapedSlashesForward
	case config.PathWithEscapedSlashesUnescapeAndRedirect:
		return escapedSlashesRedirect
	}
	return escapedSlashesKeep
}

// applyEscapedSlashes applies a (not keep) to u before it is normalized.
// It reports whether the request is refused (reject, and the path has an
// escaped slash or backslash), and whether it is to be redirected to u
// once normalized (unescape_and_redirect, and a "%2F" was unescaped).
// Under both unescape actions it makes each "%2F" in u's path a
// separator. A path without '%' or '\' costs one IndexByte over it.
func applyEscapedSlashes(a escapedSlashAction, u *url.URL) (reject, redirect bool) {
	if !normpath.HasEscapedSlash(u.Path, u.RawPath) {
		return false, false
	}
	if a == escapedSlashesReject {
		return true, false
	}
	var unescaped bool
	u.Path, u.RawPath, unescaped = normpath.UnescapeSlashes(u.Path, u.RawPath)
	// Only a "%2F" changes what is sent: an escaped backslash goes on as
	// it came (see UnescapeSlashes), so redirecting for one alone would
	// send the client back to the same path.
	return false, unescaped && a == escapedSlashesRedirect
}

// writeEscapedSlashRedirect answers unescape_and_redirect: 307 to u's
// path and query (normalized, escaped slashes unescaped), as Envoy
// answers UNESCAPE_AND_REDIRECT. 307 for every method: the client sends
// the same method and body again, which 301 and 302 let it change into a
// GET. A gRPC client follows no redirect, so a gRPC request is refused
// as reject refuses it (Envoy answers it 400, INTERNAL for gRPC, too).
func (p *Proxy) writeEscapedSlashRedirect(w http.ResponseWriter, grpc bool, u *url.URL) int {
	if grpc {
		return p.localReply(w, grpc, localReply{reason: ReasonPathWithEscapedSlash})
	}
	p.m.localByCode[ReasonEscapedSlashRedirect].Inc()
	h := w.Header()
	h.Set("Location", u.RequestURI())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return http.StatusTemporaryRedirect
}
