// Package cli implements the `basalt` command line (cobra). Every command
// accepts -o json for machine-readable output; long-running commands print
// progress. cmd/basalt only wires signals and exit codes to Run.
package cli
