// Package diskusage adds up the disk space and inodes a directory tree uses.
package diskusage
