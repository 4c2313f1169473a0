//go:build unix

package binarycache

import "syscall"

const noFollow = syscall.O_NOFOLLOW
