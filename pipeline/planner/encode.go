package planner

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The batch value is written by hand rather than with encoding/json: a
// 1M-device campaign is about 150 MB of JSON, and appending each device
// once into its wave's buffer, with no reflection and no intermediate
// values, keeps encoding a small share of the planning time. Tests decode
// every shape with schemas.DecodeBatch to hold the encoder to the schema.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does, so the output is always valid JSON.
func appendString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers;
		// encoding/json escapes them too.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendStringS(b []byte, s string) []byte {
	return appendString(b, []byte(s))
}

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
		b = appendString(b, d.UserID)
	}
	b = append(b, `,"token":`...)
	b = appendString(b, d.Token)
	b = append(b, `,"platform":`...)
	b = appendString(b, d.Platform)
	if len(d.Locale) > 0 {
		b = append(b, `,"locale":`...)
		b = appendString(b, d.Locale)
	}
	if len(d.Timezone) > 0 {
		b = append(b, `,"timezone":`...)
		b = appendString(b, d.Timezone)
	}
	return append(b, '}')
}
