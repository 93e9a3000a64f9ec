// Package csi will be the Kubernetes CSI driver (identity, controller and
// node services) for Basalt volumes.
//
// Not implemented yet: this package is part of the repository skeleton and
// has no issue yet. It holds no code.
package csi
