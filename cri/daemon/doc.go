// Package daemon runs enroot-cri serve: it claims the CRI socket (replacing a stale
// one, refusing to start beside a live daemon), serves while it recovers state (calls
// answer Unavailable until recovery is done), and stops gracefully when its context
// ends, removing the socket.
package daemon
