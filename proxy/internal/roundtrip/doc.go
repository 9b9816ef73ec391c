// Package roundtrip is what the proxy's upstream transports
// (proxy/h1client, proxy/h2client) report of one round trip to the
// proxy without httptrace: the events the proxy acts on, as a Hooks
// value given beside the request.
//
// httptrace costs a context value, a ClientTrace and a closure per hook
// on every request; a Hooks value is one the caller keeps for the whole
// request. Both transports take the same type, so that the proxy reaches
// either through one interface. Hooks are called on the goroutine that
// runs the round trip, before it returns, never after: one value may
// serve every attempt of a request in turn.
package roundtrip
