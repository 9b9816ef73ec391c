// Package examples holds the runnable example of Outrigger: the catalog app
// (package catalog) and the sidecar configuration that fronts it,
// outrigger.yaml, embedded here as [SidecarConfig] so that `outrigger demo`
// ships with it.
package examples

import _ "embed"

// SidecarConfig is outrigger.yaml: the sidecar configuration for the catalog
// app listening on [CatalogAddr].
//
//go:embed outrigger.yaml
var SidecarConfig string

// CatalogAddr is where outrigger.yaml expects the catalog app. `outrigger
// demo` runs the catalog on a free loopback port instead and substitutes that
// address for this one.
const CatalogAddr = "127.0.0.1:8080"
