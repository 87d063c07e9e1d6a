// Package metrics holds enroot-cri's Prometheus metrics and serves them on
// [metrics] address.
package metrics
