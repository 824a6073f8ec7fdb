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
	if bytes.ContainsAny(b, "<>&\u2028\u2029") || !json.Valid(b) {
		return false
	}
	var c bytes.Buffer
	c.Grow(len(b))
	if json.Compact(&c, b) != nil {
		return false
	}
	return bytes.Equal(c.Bytes(), b)
}
