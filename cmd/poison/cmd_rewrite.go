package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'rewrite' command.
func rewriteCommand() command {
	c := command{name: "rewrite", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("rewrite: not implemented yet")
	}
	return c
}
