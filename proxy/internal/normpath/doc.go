// Package normpath normalizes a request's path before it is routed, so
// that two spellings of one resource cannot be routed (or allowed, or
// denied) differently from how the upstream will read them: a route for
// "/admin" is not passed by with "/public/../admin" or "/%61dmin".
//
// The normalization is RFC 3986's (§6.2.2): escapes of unreserved
// characters are decoded ("%7E" is "~", "%2e" is "."), the hex digits of
// the other escapes are upper-cased ("%2f" is "%2F"), and the dot
// segments are removed (§5.2.4: "/a/./b/../c" is "/a/c"; ".." never
// climbs above the root). Optionally, runs of slashes are merged into
// one ("/a//b" is "/a/b"), which RFC 3986 does not do but many servers
// do when they map a path to files.
//
// An escaped slash ("%2F") stays escaped and is not a segment separator,
// so "/a%2F..%2Fb" keeps its dots. Only a path that begins with '/' is
// normalized: an asterisk-form ("*") or authority-form target is not a
// path.
//
// HasEscapedSlash and UnescapeSlashes serve a listener's
// path_with_escaped_slashes (Envoy's path_with_escaped_slashes_action):
// the first finds "%2F" or "%5C" (either case) in a path, the second
// makes each "%2F" a separator, after which Normalize removes the dot
// segments it exposed ("/a%2F..%2Fb" is then "/b").
//
// Normalize works on the two halves of net/url's URL: the decoded Path
// and the RawPath it keeps when the request's escaping differs from
// Path's default one. Most paths need nothing; finding that out reads
// the path once and allocates nothing.
package normpath
