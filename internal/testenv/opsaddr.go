package testenv

import (
	"encoding/json"
	"strings"
)

// OpsAddr is where a stage's JSON log says its ops endpoint listens (the
// "ops endpoint listening" line of internal/service), or "" when it has not
// said so yet: tests start stages on port 0 and read the port they got.
func OpsAddr(log string) string {
	for line := range strings.Lines(log) {
		var m struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "ops endpoint listening" {
			return m.Addr
		}
	}
	return ""
}
