// Package flatjson reads and writes, by hand, the flat JSON of the
// pipeline's hot paths: batch devices in the dispatcher, results in
// feedback. Reading takes only the plain forms (a string without escapes,
// an integer without fraction or exponent); anything else reports !ok, and
// the caller falls back to encoding/json and the event's JSON Schema, which
// decide. So a reader here only ever needs to be right about what it
// accepts, never complete. Writing (write.go: the planner's batches, the
// dispatcher's results) is the other way round: complete, and byte for
// byte what json.Marshal writes.
package flatjson

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
	end, ok := integerPart(raw, i)
	if !ok || (end < len(raw) && (raw[end] == '.' || raw[end] == 'e' || raw[end] == 'E')) {
		return 0, i, false
	}
	v, err := strconv.ParseInt(string(raw[i:end]), 10, 64)
	if err != nil {
		return 0, i, false
	}
	return v, end, true
}

// Number reads a JSON number at raw[i], per RFC 8259's grammar, as a
// float64; a value out of float64's range is !ok.
func Number(raw []byte, i int) (v float64, next int, ok bool) {
	end, ok := integerPart(raw, i)
	if !ok {
		return 0, i, false
	}
	if end < len(raw) && raw[end] == '.' {
		if end = digits(raw, end+1); raw[end-1] == '.' {
			return 0, i, false
		}
	}
	if end < len(raw) && (raw[end] == 'e' || raw[end] == 'E') {
		end++
		if end < len(raw) && (raw[end] == '+' || raw[end] == '-') {
			end++
		}
		exp := end
		if end = digits(raw, end); end == exp {
			return 0, i, false
		}
	}
	v, err := strconv.ParseFloat(string(raw[i:end]), 64)
	if err != nil {
		return 0, i, false
	}
	return v, end, true
}

// integerPart scans -?(0|[1-9][0-9]*) at raw[i], returning where it ends.
func integerPart(raw []byte, i int) (end int, ok bool) {
	if i < len(raw) && raw[i] == '-' {
		i++
	}
	end = digits(raw, i)
	if end == i || (end-i > 1 && raw[i] == '0') {
		return i, false
	}
	return end, true
}

func digits(raw []byte, i int) int {
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	return i
}

// Members reads a JSON object at raw[i] (after white space) whose keys are
// plain strings. For each member, member is called with the key and the
// index of its value, and returns the index after the value (or !ok to
// give up). Members returns the index after the closing brace.
func Members(raw []byte, i int, member func(key []byte, i int) (next int, ok bool)) (next int, ok bool) {
	i = SkipSpace(raw, i)
	if i >= len(raw) || raw[i] != '{' {
		return i, false
	}
	i = SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return i + 1, true
	}
	for {
		key, next, ok := PlainString(raw, i)
		if !ok {
			return i, false
		}
		i = SkipSpace(raw, next)
		if i >= len(raw) || raw[i] != ':' {
			return i, false
		}
		if i, ok = member(key, SkipSpace(raw, i+1)); !ok {
			return i, false
		}
		i = SkipSpace(raw, i)
		if i < len(raw) && raw[i] == ',' {
			i = SkipSpace(raw, i+1)
			continue
		}
		if i < len(raw) && raw[i] == '}' {
			return i + 1, true
		}
		return i, false
	}
}

// Object reads a flat JSON object at raw[i] (after white space). Each key
// must be a plain string found in keys, which gives each key its own bit,
// and may appear once; for each member, value is called with the key's
// bit and the index of its value, and returns the index after the value
// (or !ok to give up). Object returns the bits of the keys seen and the
// index after the closing brace.
func Object(raw []byte, i int, keys map[string]int, value func(bit, i int) (next int, ok bool)) (seen, next int, ok bool) {
	next, ok = Members(raw, i, func(key []byte, i int) (int, bool) {
		bit := keys[string(key)]
		if bit == 0 || seen&bit != 0 {
			return i, false
		}
		seen |= bit
		return value(bit, i)
	})
	return seen, next, ok
}

// Skip returns the index after the JSON value at raw[i] (after white
// space). It only finds where the value ends, and checks nothing else: a
// string ends at its first unescaped quote, an object or array at the
// bracket that closes it (outside strings), a number or literal at the next
// delimiter. It reports !ok when the input ends first or there is no value.
// Whoever uses the span must validate it (a hand reader here, or
// encoding/json and the event's schema).
func Skip(raw []byte, i int) (next int, ok bool) {
	i = SkipSpace(raw, i)
	if i >= len(raw) {
		return i, false
	}
	switch raw[i] {
	case '"':
		return skipString(raw, i)
	case '{', '[':
		depth := 0
		for i < len(raw) {
			switch raw[i] {
			case '"':
				next, ok := skipString(raw, i)
				if !ok {
					return next, false
				}
				i = next
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	}
	start := i
	for i < len(raw) {
		switch raw[i] {
		case ',', '}', ']', ':', ' ', '\t', '\n', '\r':
			return i, i > start
		}
		i++
	}
	return i, i > start
}

// skipString returns the index after the string at raw[i] (a quote).
func skipString(raw []byte, i int) (int, bool) {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(raw), false
}
