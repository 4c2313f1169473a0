package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'build' command.
func buildCommand() command {
	c := command{name: "build", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("build: not implemented yet")
	}
	return c
}
