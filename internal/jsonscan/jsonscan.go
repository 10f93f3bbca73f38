// Package jsonscan reads the flat JSON values of the pipeline's hot paths
// (batch devices in the dispatcher, results in feedback) in one pass,
// without reflection. It reads only the plain forms: a string without
// escapes, an integer without fraction or exponent. Anything else reports
// !ok, and the caller falls back to encoding/json and the event's JSON
// Schema, which decide; so a scanner here only ever needs to be right
// about what it accepts, never complete.
package jsonscan

import (
	"strconv"
	"unicode/utf8"
)

// SkipSpace returns the index of the first non-whitespace byte at or after i.
func SkipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\t' || raw[i] == '\r') {
		i++
	}
	return i
}

// PlainString reads a JSON string at raw[i] that has no escapes and only
// valid UTF-8 without control characters, returning its contents (a
// sub-slice of raw) and the index after it.
func PlainString(raw []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return nil, i, false
	}
	start := i + 1
	for j := start; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			v := raw[start:j]
			if !utf8.Valid(v) {
				return nil, i, false
			}
			return v, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// Int reads a JSON integer at raw[i]: an optional minus and digits, with no
// leading zero, fraction or exponent, that fits in 64 bits.
func Int(raw []byte, i int) (v int64, next int, ok bool) {
	start := i
	if i < len(raw) && raw[i] == '-' {
		i++
	}
	digits := i
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	if i == digits || (i-digits > 1 && raw[digits] == '0') {
		return 0, start, false
	}
	if i < len(raw) && (raw[i] == '.' || raw[i] == 'e' || raw[i] == 'E') {
		return 0, start, false
	}
	v, err := strconv.ParseInt(string(raw[start:i]), 10, 64)
	if err != nil {
		return 0, start, false
	}
	return v, i, true
}

// Number reads a JSON number at raw[i], per RFC 8259's grammar, as a
// float64; a value out of float64's range is !ok.
func Number(raw []byte, i int) (v float64, next int, ok bool) {
	start := i
	if i < len(raw) && raw[i] == '-' {
		i++
	}
	digits := i
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	if i == digits || (i-digits > 1 && raw[digits] == '0') {
		return 0, start, false
	}
	if i < len(raw) && raw[i] == '.' {
		i++
		frac := i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		if i == frac {
			return 0, start, false
		}
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		exp := i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		if i == exp {
			return 0, start, false
		}
	}
	v, err := strconv.ParseFloat(string(raw[start:i]), 64)
	if err != nil {
		return 0, start, false
	}
	return v, i, true
}
