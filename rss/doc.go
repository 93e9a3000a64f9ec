// Package rss is the remote shuffle service. Its parts live in the
// subpackages: rsspb (the wire protocol), gossip (worker membership over
// hashicorp/memberlist), master (applications, placement, map
// completions, commit), worker (replicated partition files, commit index,
// fetch) and client (the Go client the Spark plugin mirrors). The design
// is in docs/rss.md. This package itself holds no code.
package rss
