// Package config is Outrigger's configuration model: plain, documented
// structs, a YAML loader that reports every problem with its key path and
// line, cross-reference checks, the defaults, and a file watcher for hot
// reload.
//
// The same types are produced by the YAML loader and, later, by the xDS
// translation; they mirror Envoy's concepts (listeners, ordered routes with a
// match and one action, clusters of endpoints) so that a Listener,
// RouteConfiguration, Cluster and ClusterLoadAssignment map onto them.
//
// Invariants a newcomer can rely on:
//
//   - The zero value of every field means "the default"; each field's comment
//     says what that default is. [Config.WithDefaults] returns a copy with every
//     default written in, so that consumers read resolved values only.
//   - [Config.Validate] never mutates. It reports all problems at once as
//     [Errors], one [FieldError] per problem, naming the key path
//     ("clusters.payments.endpoints[1]") and, when the config came from a file,
//     the file and line.
//   - [Parse] and [Load] decode (unknown keys are errors), validate, and return
//     the config with defaults applied. A config they return is valid, and
//     WithDefaults on it is the identity. Problems are reported at most
//     [MaxProblems] at a time, then a count of the rest.
//   - [Watcher] (and [Watch]) deliver a new config or the error that stopped
//     it; they never apply anything. The caller keeps serving its last good
//     config when an error is delivered. [Watcher.Reload] reads on demand
//     under the lock Run delivers under, so that every read of the file is
//     handed on before the next is made and the newest content is the last
//     handed on.
//   - A config is one YAML document; empty documents after it (a trailing
//     "---") are ignored. Header names given as a mapping are compared
//     without regard to case, as HTTP compares them.
//
// The package does no logging. Only [Watcher.Run] does I/O over time: it
// runs on the caller's goroutine, owns an fsnotify watcher (and the reader
// goroutine inside it), and closes it before returning.
package config
