// Package playground runs a whole Basalt block cluster in one process for
// trying it out: the MDS, three chunkservers in three zones and the NBD
// server, with every byte kept under one data directory. It is what
// `basalt playground` runs. It creates a thin demo volume on first start,
// exports every volume over NBD under its name through nbd/gateway (opened
// as the volume's writer while an NBD client is connected), and prints
// what to try next. Restarting with the same directory reuses the data.
package playground
