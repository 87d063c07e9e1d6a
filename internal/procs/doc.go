// Package procs reads host processes out of /proc: it finds them by what they are,
// when no PID was written down (a daemon killed before it recorded one), and counts
// what they hold (threads, descriptors, limits) for the CRI metrics. It is a leaf: it
// imports nothing of enroot-cri.
package procs
