package provenance

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestAppendLineMatchesEncodingJSON: the hand-written encoder writes the
// bytes encoding/json writes, for awkward strings too, and the decoder
// reads them back.
func TestAppendLineMatchesEncodingJSON(t *testing.T) {
	type line struct {
		V int `json:"v"`
		Record
	}
	base := Record{
		Drv:     "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv",
		Outputs: []string{"/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"},
		Host:    "board7",
		End:     time.Date(2026, 11, 25, 8, 0, 1, 500, time.FixedZone("x", 3600)),
	}
	hosts := []string{"plain", "quote\"back\\slash", "ctl\x01\x1f\x7f", "tab\tnl\nret\r", "bad\xffutf8", "sep\u2028\u2029", "üñí", "<html>&"}
	for _, h := range hosts {
		r := base
		r.Host = h
		r.MachineID = "0123456789abcdef0123456789abcdef"
		r.System = "x86_64-linux"
		r.Start = r.End.Add(-time.Second)
		r.StartSource = StartBuildLog
		r.Nix = "2.8.0"
		for _, rr := range []Record{base, r} {
			rr.Host = h
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			u := rr
			u.Start, u.End = u.Start.UTC(), u.End.UTC()
			if err := enc.Encode(line{V: Version, Record: u}); err != nil {
				t.Fatal(err)
			}
			got := AppendLine(nil, &rr)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("host %q:\n got %s\nwant %s", h, got, want.Bytes())
			}
			var back Record
			_, err := newDecoder().decode(bytes.TrimRight(got, "\n"), &back, nil)
			if h == "tab\tnl\nret\r" {
				if err == nil {
					t.Errorf("host %q read back without error", h)
				}
				continue
			}
			if err != nil {
				t.Errorf("host %q: read back: %v", h, err)
				continue
			}
			if back.Host != strings.ToValidUTF8(h, "\uFFFD") {
				t.Errorf("host %q read back as %q", h, back.Host)
			}
			if again := AppendLine(nil, &back); utf8.ValidString(h) && !bytes.Equal(again, got) {
				t.Errorf("host %q: round trip\n got %s\nwant %s", h, again, got)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"drv":"/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv","outputs":["/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"],"host":"h","end":"2026-11-25T08:00:00Z","x":[{"a":null}]}`))
	f.Add([]byte(`{"v":1,"host":"a\u00e9\"","outputs":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Record
		if _, err := newDecoder().decode(data, &r, nil); err != nil {
			return
		}
		line := AppendLine(nil, &r)
		var back Record
		if _, err := newDecoder().decode(bytes.TrimRight(line, "\n"), &back, nil); err != nil {
			t.Fatalf("re-encoded line %s does not decode: %v", line, err)
		}
		if again := AppendLine(nil, &back); !bytes.Equal(again, line) {
			t.Fatalf("not stable:\n%s\n%s", line, again)
		}
	})
}
