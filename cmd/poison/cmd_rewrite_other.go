//go:build !linux

package main

// hugeHeap is a no-op where transparent huge pages do not exist (see
// cmd_rewrite_linux.go).
func hugeHeap(int) {}
