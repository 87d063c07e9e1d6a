// Package logging carries a *slog.Logger in a context, so that every log line of an
// RPC bears its rpc, pod and container fields; and builds the daemon's logger from the
// configured level and format.
package logging
