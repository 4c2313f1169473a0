package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'lint' command.
func lintCommand() command {
	c := command{name: "lint", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("lint: not implemented yet")
	}
	return c
}
