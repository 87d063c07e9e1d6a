// Package pidwatch tells when processes the caller did not start end: each is held
// by a pidfd in one epoll set, read by one goroutine, so that the daemon learns of a
// container monitor's end as it happens, without polling and whatever the number of
// containers. It is a leaf: it imports nothing of enroot-cri.
package pidwatch
