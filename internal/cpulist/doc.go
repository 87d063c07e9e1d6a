// Package cpulist reads and writes the kernel's CPU list format ("0-3,8,10-11").
package cpulist
