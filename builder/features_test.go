package builder

import (
	"slices"
	"testing"

	"github.com/poison-nix/poison/builder/daemon"
)

func TestRequiredFeatures(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, nil},
		{map[string]string{"requiredSystemFeatures": " kvm  big-parallel kvm"}, []string{"big-parallel", "kvm"}},
		{map[string]string{"__json": `{"requiredSystemFeatures":["nixos-test","kvm"]}`, "requiredSystemFeatures": "ignored"}, []string{"kvm", "nixos-test"}},
		{map[string]string{"__json": `{"requiredSystemFeatures":"a b"}`}, []string{"a", "b"}},
		{map[string]string{"__json": `not json`}, nil},
	} {
		if got := requiredFeatures(&daemon.BasicDerivation{Env: tc.env}); !slices.Equal(got, tc.want) {
			t.Errorf("requiredFeatures(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}
