// Package daemon is the plumbing every Basalt daemon shares: configuration
// from a YAML file overridden by command-line flags, the log/slog logger,
// and the HTTP endpoint serving /metrics (Prometheus) and /healthz. It owns
// no business logic; cmd/ mains call it.
package daemon
