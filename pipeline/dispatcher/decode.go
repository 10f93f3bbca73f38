package dispatcher

import (
	"errors"
	"unicode/utf8"

	"github.com/pushlane/pushlane/internal/flatjson"
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

// fastDecodeBatch walks the batch object once: its "devices" member is
// decoded where it stands, every other member only skipped, as the schema
// reads those. Keys must be plain strings, "devices" must appear once, and
// nothing may follow the object. (The envelope used to be read with
// encoding/json, a map of raw messages, which scanned the whole batch
// twice: 0.9 µs of the dispatcher's CPU per device.)
func fastDecodeBatch(raw []byte) (*schemas.Batch, bool) {
	var devs []schemas.BatchDevice
	found, firstEnd, end := false, 0, 0
	next, ok := flatjson.Members(raw, 0, func(key []byte, i int) (int, bool) {
		if string(key) != "devices" {
			return flatjson.Skip(raw, i)
		}
		if found {
			return i, false
		}
		found = true
		var err error
		devs, firstEnd, end, err = decodeDevices(raw, i)
		return end, err == nil
	})
	if !ok || !found || flatjson.SkipSpace(raw, next) != len(raw) ||
		len(devs) < 1 || len(devs) > schemas.MaxBatchDevices {
		return nil, false
	}
	// The batch as it came, with the device list cut after its first
	// device: everything but the other devices goes through the schema.
	small := make([]byte, 0, firstEnd+1+len(raw)-end)
	small = append(small, raw[:firstEnd]...)
	small = append(small, ']')
	small = append(small, raw[end:]...)
	b, err := schemas.DecodeBatch(small)
	if err != nil {
		return nil, false
	}
	b.Devices = devs
	return b, true
}

// decodeDevices reads the JSON array of batch devices at raw[i] in one
// pass, accepting only what the batch schema accepts for them: the six
// keys exactly, each at most once, token and platform present, strings for
// the strings, a non-negative integer for device_id, a token of 1 to 4096
// characters, platform ios or android. Anything else — including escapes
// and nulls, which the schema may accept — is left to the schema. It also
// returns the index after the first device and the index after the array.
func decodeDevices(raw []byte, i int) (devs []schemas.BatchDevice, firstEnd, end int, err error) {
	i = flatjson.SkipSpace(raw, i)
	if i >= len(raw) || raw[i] != '[' {
		return nil, 0, 0, errUnsure
	}
	i = flatjson.SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return nil, 0, i + 1, nil // empty: the length rule rejects it
	}
	out := make([]schemas.BatchDevice, 0, 1+(len(raw)-i)/100)
	var d schemas.BatchDevice
	member := func(bit, i int) (int, bool) {
		if bit == 1 { // device_id: digits only (no sign, fraction or exponent)
			id, next, ok := flatjson.Int(raw, i)
			d.DeviceID = id
			return next, ok && raw[i] != '-'
		}
		v, next, ok := flatjson.PlainString(raw, i)
		if !ok {
			return i, false
		}
		switch bit {
		case 2:
			d.UserID = string(v)
		case 4:
			if len(v) == 0 || (len(v) > 4096 && utf8.RuneCount(v) > 4096) {
				return i, false
			}
			d.Token = string(v)
		case 8:
			if d.Platform, ok = schemas.PlatformOf(v); !ok {
				return i, false
			}
		case 16:
			d.Locale = string(v)
		case 32:
			d.Timezone = string(v)
		}
		return next, true
	}
	for {
		d = schemas.BatchDevice{}
		seen, next, ok := flatjson.Object(raw, i, deviceKeys, member)
		if !ok || seen&(4|8) != 4|8 {
			return nil, 0, 0, errUnsure
		}
		if len(out) == 0 {
			firstEnd = next
		}
		out = append(out, d)
		i = flatjson.SkipSpace(raw, next)
		if i < len(raw) && raw[i] == ',' {
			i = flatjson.SkipSpace(raw, i+1)
			continue
		}
		if i < len(raw) && raw[i] == ']' {
			return out, firstEnd, i + 1, nil
		}
		return nil, 0, 0, errUnsure
	}
}

var deviceKeys = map[string]int{"device_id": 1, "user_id": 2, "token": 4, "platform": 8, "locale": 16, "timezone": 32}
