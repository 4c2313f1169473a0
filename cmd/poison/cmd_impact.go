package main

import (
	"context"
	"errors"
)

func impactCommand() command {
	c := command{
		name:    "impact",
		summary: "how many derivations of a closure a pending registry change rebuilds (its blast radius)",
		usage:   "[--registry DIR] [--lock FILE] [--json] [--stdin] [--by-name] [--max N] DRV...",
	}
	c.run = func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, &c)
		if err := parseFlags(e, &c, fs, args); err != nil {
			return err
		}
		return errors.New("impact: not implemented yet")
	}
	return c
}
