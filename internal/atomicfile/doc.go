// Package atomicfile replaces files atomically: write a temporary file beside the
// target, fsync it, rename it over the target, fsync the directory. A reader sees the
// old content or the new, never a mix, even across a crash.
package atomicfile
