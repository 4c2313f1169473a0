package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'show' command.
func showCommand() command {
	c := command{name: "show", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("show: not implemented yet")
	}
	return c
}
