package progress

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/poison-nix/poison/builder/daemon"
)

// WriteInternalJSON writes m as Nix's internal-json logger does: one line
// "@nix " + a JSON object with an "action" of msg, start, stop or result
// and the activity's id, type, level, text, fields and parent.
func WriteInternalJSON(w io.Writer, m daemon.Message) error {
	v := InternalJSON(m)
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "@nix %s\n", data)
	return err
}

// InternalJSON returns the object Nix's internal-json logger writes for
// m, nil for a message it does not log.
func InternalJSON(m daemon.Message) map[string]any {
	fields := make([]any, len(m.Fields))
	for i, f := range m.Fields {
		if f.IsString {
			fields[i] = f.String
		} else {
			fields[i] = f.Int
		}
	}
	switch m.Kind {
	case daemon.LogLine:
		return map[string]any{"action": "msg", "level": 0, "msg": m.Text}
	case daemon.StartActivity:
		return map[string]any{"action": "start", "id": m.ID, "level": m.Level, "type": m.Activity, "text": m.Text, "fields": fields, "parent": m.Parent}
	case daemon.StopActivity:
		return map[string]any{"action": "stop", "id": m.ID}
	case daemon.Result:
		return map[string]any{"action": "result", "id": m.ID, "type": m.Result, "fields": fields}
	}
	return nil
}
