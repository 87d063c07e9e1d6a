// Package doctor checks that a node can run enroot-cri's pods and says what to fix:
// `enroot-cri doctor`.
package doctor
