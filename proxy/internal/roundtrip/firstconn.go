package roundtrip

import "context"

// firstConnKey marks a dial's context (see WithFirstConn).
type firstConnKey struct{}

// WithFirstConn marks ctx as a transport's dial of an endpoint's first
// connection, when the endpoint has no other: the dial function then
// makes it even beyond a cap on connections shared with other endpoints
// (a cluster's max_connections), as Envoy's connection pools make a
// host's first connection whatever the cluster's limit, so that the cap
// never leaves an endpoint with no connection to queue its calls on.
func WithFirstConn(ctx context.Context) context.Context {
	return context.WithValue(ctx, firstConnKey{}, true)
}

// FirstConn reports whether ctx is the context of a dial WithFirstConn
// marked.
func FirstConn(ctx context.Context) bool {
	v, _ := ctx.Value(firstConnKey{}).(bool)
	return v
}
