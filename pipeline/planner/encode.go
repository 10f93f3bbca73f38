package planner

import (
	"strconv"
	"time"

	"github.com/pushlane/pushlane/internal/flatjson"
)

// The batch value is written by hand rather than with encoding/json: a
// 1M-device campaign is about 150 MB of JSON, and appending each device
// once into its wave's buffer, with no reflection and no intermediate
// values, keeps encoding a small share of the planning time. Tests decode
// every shape with schemas.DecodeBatch to hold the encoder to the schema.

// appendTime appends t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendDevice appends one schemas.BatchDevice object; empty optional
// fields are left out like the struct's omitempty tags do.
func appendDevice(b []byte, d *Device) []byte {
	b = append(b, `{"device_id":`...)
	b = strconv.AppendInt(b, d.ID, 10)
	if len(d.UserID) > 0 {
		b = append(b, `,"user_id":`...)
		b = flatjson.AppendString(b, d.UserID)
	}
	b = append(b, `,"token":`...)
	b = flatjson.AppendString(b, d.Token)
	b = append(b, `,"platform":`...)
	b = flatjson.AppendString(b, d.Platform)
	if len(d.Locale) > 0 {
		b = append(b, `,"locale":`...)
		b = flatjson.AppendString(b, d.Locale)
	}
	if len(d.Timezone) > 0 {
		b = append(b, `,"timezone":`...)
		b = flatjson.AppendString(b, d.Timezone)
	}
	return append(b, '}')
}
