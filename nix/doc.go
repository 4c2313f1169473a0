// Package nix holds no Go code: the directory is the Nix-language side of
// poison (docs/formats.md), lib.nix and overlay.nix, which consume the poison.nix
// set that lock.File.Nix writes. Its tests evaluate them with the real
// nix-instantiate against the stdenv-like fixture in testdata/nix and
// compare the result with builder.Rewrite.
package nix
