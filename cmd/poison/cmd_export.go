package main

import (
	"context"
	"errors"
)

// PLACEHOLDER: replaced by the owner of the 'export' command.
func exportCommand() command {
	c := command{name: "export", summary: "(not yet implemented)", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		return errors.New("export: not implemented yet")
	}
	return c
}
