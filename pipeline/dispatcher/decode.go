package dispatcher

import (
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/pushlane/pushlane/schemas"
)

// decodeBatch is schemas.DecodeBatch at a fraction of the cost for the
// devices, which are nearly all of a batch: the envelope (ids, times,
// content, options) is validated by the JSON Schema with the device list
// cut to its first device, and the devices by a streaming check of exactly
// the schema's device rules (known keys only, types, token length,
// platform). Anything the fast path is unsure of (nulls, non-integer
// numbers, escapes in keys) goes to schemas.DecodeBatch, which decides —
// and words the error of every invalid batch.
func decodeBatch(raw []byte) (*schemas.Batch, error) {
	if b, ok := fastDecodeBatch(raw); ok {
		return b, nil
	}
	return schemas.DecodeBatch(raw)
}

var errUnsure = errors.New("fast path unsure")

func fastDecodeBatch(raw []byte) (*schemas.Batch, bool) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, false
	}
	devRaw, ok := env["devices"]
	if !ok {
		return nil, false
	}
	devs, err := decodeDevices(devRaw)
	if err != nil || len(devs) < 1 || len(devs) > 10000 {
		return nil, false
	}
	first, err := json.Marshal(devs[:1])
	if err != nil {
		return nil, false
	}
	env["devices"] = first
	small, err := json.Marshal(env)
	if err != nil {
		return nil, false
	}
	b, err := schemas.DecodeBatch(small)
	if err != nil {
		return nil, false
	}
	b.Devices = devs
	return b, true
}

// decodeDevices reads a JSON array of batch devices, accepting only what
// the batch schema accepts for them: encoding/json does the decoding and
// the type checks, and a scan of the raw bytes rejects what encoding/json
// would let through but the schema does not (keys other than the six, in
// any spelling; null; nested values; repeated keys).
func decodeDevices(raw []byte) ([]schemas.BatchDevice, error) {
	if !plainDeviceKeys(raw) {
		return nil, errUnsure
	}
	var out []schemas.BatchDevice
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, errUnsure
	}
	for i := range out {
		d := &out[i]
		if d.Token == "" || utf8.RuneCountInString(d.Token) > 4096 || d.DeviceID < 0 ||
			(d.Platform != schemas.PlatformIOS && d.Platform != schemas.PlatformAndroid) {
			return nil, errUnsure
		}
	}
	return out, nil
}

var deviceKeys = map[string]int{"device_id": 1, "user_id": 2, "token": 4, "platform": 8, "locale": 16, "timezone": 32}

// plainDeviceKeys scans an array of flat objects: every key must be one of
// deviceKeys, exactly, at most once, token and platform present, no value
// null, an object or an array, and no escape in a key.
func plainDeviceKeys(raw []byte) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return true // empty: the length rule rejects it
	}
	for {
		if i >= len(raw) || raw[i] != '{' {
			return false
		}
		seen := 0
		i = skipSpace(raw, i+1)
		for {
			if i >= len(raw) || raw[i] != '"' {
				return false
			}
			end := i + 1
			for end < len(raw) && raw[end] != '"' && raw[end] != '\\' {
				end++
			}
			if end >= len(raw) || raw[end] != '"' {
				return false
			}
			bit := deviceKeys[string(raw[i+1:end])]
			if bit == 0 || seen&bit != 0 {
				return false
			}
			seen |= bit
			i = skipSpace(raw, end+1)
			if i >= len(raw) || raw[i] != ':' {
				return false
			}
			i = skipSpace(raw, i+1)
			if i >= len(raw) {
				return false
			}
			switch raw[i] {
			case '{', '[', 'n':
				return false
			case '"':
				i++
				for i < len(raw) && raw[i] != '"' {
					if raw[i] == '\\' {
						i++
					}
					i++
				}
				i++
			default: // a number, true or false: encoding/json checks the type
				for i < len(raw) && raw[i] != ',' && raw[i] != '}' && raw[i] != ' ' && raw[i] != '\n' && raw[i] != '\t' && raw[i] != '\r' {
					i++
				}
			}
			i = skipSpace(raw, i)
			if i < len(raw) && raw[i] == ',' {
				i = skipSpace(raw, i+1)
				continue
			}
			if i < len(raw) && raw[i] == '}' {
				break
			}
			return false
		}
		if seen&(4|8) != 4|8 {
			return false
		}
		i = skipSpace(raw, i+1)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
			continue
		}
		return i < len(raw) && raw[i] == ']' && skipSpace(raw, i+1) == len(raw)
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\t' || raw[i] == '\r') {
		i++
	}
	return i
}
