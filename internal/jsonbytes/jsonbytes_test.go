package jsonbytes

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestEmbeddable(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1}`:        true,
		`[1,2,"x"]`:      true,
		`"plain"`:        true,
		`{"a": 1}`:       false, // not compact
		`{"a":1`:         false, // not JSON
		`"<b>"`:          false, // an encoder escapes <, > and &
		"\"\u2028\"":     false,
		"\xff":           false,
		`12`:             true,
		` {"a":1}`:       false,
		`{"a":"\u00e9"}`: true,
	} {
		if got := Embeddable([]byte(in)); got != want {
			t.Errorf("Embeddable(%q) = %v, want %v", in, got, want)
		}
	}
}

// compact agrees with json.Compact on valid JSON, strings with escaped
// quotes and backslashes included.
func TestCompactAgreesWithJSONCompact(t *testing.T) {
	for _, in := range []string{
		`{"a":1}`, `{"a": 1}`, "{\"a\":\n1}", "[1,\t2]", "[1,\r2]", `"a b"`, `" "`,
		`{"a\"":" x"}`, `{"a\\":1}`, `{"a\\": 1}`, `["\\\"", 1]`, `["\\\"",1]`, `"\u0020"`, `12`,
	} {
		var c bytes.Buffer
		if err := json.Compact(&c, []byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got, want := compact([]byte(in)), c.String() == in; got != want {
			t.Errorf("compact(%q) = %v, want %v", in, got, want)
		}
	}
}
