package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'init' command.
func initCommand() command {
	c := command{name: "init", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("init: not implemented yet")
	}
	return c
}
