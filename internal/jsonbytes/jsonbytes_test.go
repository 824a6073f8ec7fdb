package jsonbytes

import "testing"

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
