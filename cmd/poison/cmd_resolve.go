package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'resolve' command.
func resolveCommand() command {
	c := command{name: "resolve", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("resolve: not implemented yet")
	}
	return c
}
