package proxy

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// underscoreAction is a listener's headers_with_underscores, compiled:
// what becomes of a request header field whose name has an underscore.
// RFC 9110 §5.1 allows "_" in a field name, but upstreams that fold "_"
// and "-" together (CGI and WSGI, nginx with underscores_in_headers)
// read X_Forwarded_For as X-Forwarded-For, so a client could spoof a
// field the sidecar sets or a route matches on. This is Envoy's
// headers_with_underscores_action.
type underscoreAction uint8

const (
	underscoresAllow  underscoreAction = iota // forwarded as they came
	underscoresDrop                           // deleted and counted
	underscoresReject                         // the request is answered 400
)

func compileUnderscores(a config.HeadersWithUnderscores) underscoreAction {
	switch a {
	case config.HeadersWithUnderscoresDrop:
		return underscoresDrop
	case config.HeadersWithUnderscoresReject:
		return underscoresReject
	}
	return underscoresAllow
}

// applyUnderscores applies a (drop or reject) to r's header before the
// request is routed. Under reject it returns the name of a field that
// has an underscore, or "" when none has; under drop it deletes each
// such field and counts it in dropped.
//
// A name is looked at byte by byte, without allocating: a request
// without underscores costs one pass over its header's keys.
func applyUnderscores(a underscoreAction, r *http.Request, dropped prometheus.Counter) (name string) {
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if a == underscoresReject {
			return k
		}
		delete(r.Header, k) // deleting while ranging is safe (Go spec)
		dropped.Inc()
	}
	return ""
}

// underscoreReply is the local reply to a request refused for the field
// name.
func underscoreReply(name string) localReply {
	return localReply{reason: ReasonHeaderWithUnderscore, detail: "request header " + name + " has an underscore in its name"}
}
