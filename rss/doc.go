// Package rss will be the remote shuffle service: master, workers, the Go
// client, and (under rss/spark) the Spark plugin.
//
// Not implemented yet: this package is part of the repository skeleton and
// is built by the shuffle service issues (#5, #6). It holds no code.
package rss
