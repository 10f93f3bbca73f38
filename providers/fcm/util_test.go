package fcm_test

import (
	"encoding/json"
	"testing"
)

func rewriteTokenURI(t testing.TB, raw []byte, uri string) []byte {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["token_uri"] = uri
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
