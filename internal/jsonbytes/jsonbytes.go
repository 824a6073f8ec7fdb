// Package jsonbytes decides how the byte fields of a task (payload,
// result) are written in JSON: embedded as they are when they read back
// byte for byte, base64 otherwise.
package jsonbytes

import (
	"bytes"
	"encoding/json"
)

// Embeddable reports whether b can be embedded in a JSON document as a
// value and read back byte for byte through any encoding/json encoder:
// valid, compact JSON with nothing an encoder would escape.
func Embeddable(b []byte) bool {
	return !bytes.ContainsAny(b, "<>&\u2028\u2029") && json.Valid(b) && compact(b)
}

// compact reports whether the valid JSON b is compact: json.Compact, which
// only drops the whitespace outside strings, would leave it as it is.
// (Checked in place: compacting a copy to compare costs an allocation per
// payload.)
func compact(b []byte) bool {
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}
