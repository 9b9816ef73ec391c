// Package wire holds the pieces of HTTP message syntax that the proxy's
// servers (proxy/h1server, proxy/h2server) and client (proxy/h1client)
// read the same way, so that both ends of the proxy agree on them:
// decimal lengths, ASCII case folding, field-value whitespace, canonical
// field names, a request's authority (Host, :authority), and the plain
// origin-form request target split without net/url.
package wire
