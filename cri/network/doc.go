// Package network attaches pods to the node's CNI network through libcni: ADD when a
// pod starts (with the portmap capability for host ports), DEL when it stops. It
// knows the CRI only through the plain values cri/server passes it.
package network
