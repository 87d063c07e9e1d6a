// Package hostdev describes the host's device nodes.
package hostdev
