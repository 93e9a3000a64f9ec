// Package nbd will export volumes over the NBD protocol (fixed newstyle
// handshake, structured replies, base:allocation) and attach them to the
// kernel through netlink.
//
// Not implemented yet: this package is part of the repository skeleton and
// is built by the NBD issue (#4). It holds no code.
package nbd
