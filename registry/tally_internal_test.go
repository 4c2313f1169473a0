package registry

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// TestTally checks the compact multiset against a map, across chunk
// boundaries, with empty keys and keys longer than a chunk.
func TestTally(t *testing.T) {
	var tl tally
	want := map[string]int{}
	add := func(k string) {
		tl.add(k)
		want[k]++
	}
	add("")
	add("")
	for i := 0; i < 300000; i++ {
		add(fmt.Sprintf("key-%d", i%70001))
	}
	long := strings.Repeat("x", refLong+5)
	add(long)
	add(long)
	add(long[:refLong-1])
	add("zz")
	got := tl.toMap()
	if !maps.Equal(got, want) {
		t.Fatalf("tally has %d keys, want %d", len(got), len(want))
	}
	prev, n := "", 0
	tl.each(func(k []byte, _ int) bool {
		if n > 0 && string(k) <= prev {
			t.Fatalf("key %.20q after %.20q", k, prev)
		}
		prev, n = string(k), n+1
		return true
	})
	if len(tl.chunks) < 3 {
		t.Errorf("%d chunks: the test did not cross chunk boundaries", len(tl.chunks))
	}
}
