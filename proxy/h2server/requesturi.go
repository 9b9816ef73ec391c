package h2server

import (
	"net/url"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// parseRequestURI sets *u to what url.ParseRequestURI(path) returns, or
// returns its error. An origin-form path of plain characters (none that
// net/url would unescape or escape, so that it sets no RawPath) is split
// at its first '?' here, without the allocation of a URL; others go
// through net/url. The caller has checked that path is not empty.
func parseRequestURI(path string, u *url.URL) error {
	if wire.ParsePlainPath(path, u) {
		return nil
	}
	v, err := url.ParseRequestURI(path)
	if err != nil {
		return err
	}
	*u = *v
	return nil
}
