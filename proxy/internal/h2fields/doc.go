// Package h2fields decodes HTTP/2 header blocks into field lists, for
// the proxy's HTTP/2 server (proxy/h2server) and client
// (proxy/h2client), with the checks x/net/http2's Framer makes when it
// decodes them itself (ReadMetaHeaders), in the same order and with the
// same outcome, but without its allocations: its MetaHeadersFrame, the
// emit closure and the state it captures, and the growth of its Fields
// slice cost several allocations per block.
//
// A Decoder is a connection's, for its life: the HPACK dynamic table
// carries from block to block (RFC 9113 §4.3), and the state of the
// block being decoded lives in the Decoder, whose emit method is the
// HPACK decoder's emit function. The caller reads the frames (a HEADERS
// frame and its CONTINUATIONs) and hands their fragments to the Decoder:
// Begin, Write for each fragment, End. The Decoder checks
//
//   - each field's value (no NUL, CR or LF) and each regular field's
//     name (a token without uppercase letters, RFC 9113 §8.2.1);
//   - that no pseudo-header field follows a regular one (§8.3);
//   - the header list's size against its limit, with "trailer" fields
//     on a budget of their own, each declared name counting as a field,
//     as x/net counts them: a list over it is Truncated, not an error;
//   - each fragment against twice what the list may still hold, and
//     that no fragment follows a malformed field (past which sizes are
//     not counted): either ends the connection;
//   - the pseudo-header fields: only those §8.3 (and RFC 8441's
//     :protocol) defines, each once, not request and response ones
//     together;
//   - optionally, values that start or end with SP or HTAB, which
//     §8.2.1 makes malformed and x/net lets through.
//
// Invariants: a malformed field list is a stream error and the block is
// still decoded to its end, so the dynamic table stays in step; an HPACK
// error, and a fragment refused, are connection errors. The decoded
// fields are the Decoder's buffer, valid until the next Begin (or
// Release).
package h2fields
