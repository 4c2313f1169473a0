package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'add' command.
func addCommand() command {
	c := command{name: "add", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("add: not implemented yet")
	}
	return c
}
