// Package wire holds the pieces of HTTP/1.1 message syntax that the
// proxy's server (proxy/h1server) and client (proxy/h1client) read the
// same way, so that both ends of the proxy agree on them.
package wire
