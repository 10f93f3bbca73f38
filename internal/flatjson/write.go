package flatjson

import "unicode/utf8"

// AppendString appends s as a JSON string, byte for byte as json.Marshal
// writes a string: quote, backslash and control characters escaped (\b, \f,
// \n, \r, \t short, the others as \u00XX), <, > and & escaped as \u003c,
// \u003e and \u0026, U+2028 and U+2029 escaped, invalid UTF-8 replaced by
// U+FFFD. Matching json.Marshal exactly, HTML escaping included, keeps a
// hand-written event byte-identical to its encoding/json form (the planner
// embeds json.Marshal output in the same batch), so tests can compare bytes;
// the escaped characters do not occur in tokens or ids, so it costs nothing
// there.
func AppendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if plain(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
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
		// Converting at most UTFMax bytes lets a []byte's conversion use a
		// stack buffer instead of allocating; for a string it is free.
		r, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end a line in JavaScript.
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

const hexDigits = "0123456789abcdef"

// plain reports whether AppendString copies the ASCII byte c as it is:
// not a control character, quote, backslash, <, > or &. The set is two
// 64-bit masks, one for bytes 0-63 and one for 64-127.
func plain(c byte) bool {
	const (
		low  uint64 = 0xffff_ffff_0000_0000 &^ (1<<'"' | 1<<'&' | 1<<'<' | 1<<'>')
		high uint64 = 0xffff_ffff_ffff_ffff &^ (1 << ('\\' - 64))
	)
	mask := low
	if c >= 64 {
		mask = high
	}
	return mask>>(c&63)&1 != 0
}
