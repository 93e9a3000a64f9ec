// Package playground runs a whole Basalt cluster in one process for
// trying it out: the MDS, three chunkservers in three zones and the NBD
// server, plus the remote shuffle service's master and two workers, with
// every byte kept under one data directory. It is what `basalt
// playground` runs. It creates a thin demo volume on first start, exports
// every volume over NBD under its name through nbd/gateway (opened as the
// volume's writer while an NBD client is connected), waits until the RSS
// master sees both workers, and prints what to try next. Restarting with
// the same directory reuses the data (the RSS master's registrations live
// in memory and start empty). The shuffle service always stays on
// loopback, even with Config.PublicHost.
package playground
