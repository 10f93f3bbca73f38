package fcmsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// The FCM HTTP v1 SendMessageRequest and Message resource, every field
// Google documents (firebase.google.com/docs/reference/fcm/rest/v1/
// projects.messages). Tags give the proto field names; the decoder accepts
// them and their lowerCamelCase JSON names, as Google's proto JSON parser
// does, and nothing else: a field not listed here is refused as FCM refuses
// it, instead of being dropped the way encoding/json would drop it.
type sendRequest struct {
	ValidateOnly bool     `json:"validate_only"`
	Message      *message `json:"message"`
}

type message struct {
	Name         string            `json:"name"`
	Data         map[string]string `json:"data"`
	Notification *notification     `json:"notification"`
	Android      *androidConfig    `json:"android"`
	Webpush      *webpushConfig    `json:"webpush"`
	APNS         *apnsConfig       `json:"apns"`
	FCMOptions   *fcmOptions       `json:"fcm_options"`
	Token        string            `json:"token"`
	Topic        string            `json:"topic"`
	Condition    string            `json:"condition"`
}

type notification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Image string `json:"image"`
}

type androidConfig struct {
	CollapseKey            string               `json:"collapse_key"`
	Priority               string               `json:"priority"` // AndroidMessagePriority; checked by serveSend
	TTL                    string               `json:"ttl"`      // google.protobuf.Duration; checked by serveSend
	RestrictedPackageName  string               `json:"restricted_package_name"`
	Data                   map[string]string    `json:"data"`
	Notification           *androidNotification `json:"notification"`
	FCMOptions             *androidFCMOptions   `json:"fcm_options"`
	DirectBootOK           bool                 `json:"direct_boot_ok"`
	BandwidthConstrainedOK bool                 `json:"bandwidth_constrained_ok"`
	RestrictedSatelliteOK  bool                 `json:"restricted_satellite_ok"`
}

type androidNotification struct {
	Title                   string         `json:"title"`
	Body                    string         `json:"body"`
	Icon                    string         `json:"icon"`
	Color                   string         `json:"color"`
	Sound                   string         `json:"sound"`
	Tag                     string         `json:"tag"`
	ClickAction             string         `json:"click_action"`
	BodyLocKey              string         `json:"body_loc_key"`
	BodyLocArgs             []string       `json:"body_loc_args"`
	TitleLocKey             string         `json:"title_loc_key"`
	TitleLocArgs            []string       `json:"title_loc_args"`
	ChannelID               string         `json:"channel_id"`
	Ticker                  string         `json:"ticker"`
	Sticky                  bool           `json:"sticky"`
	EventTime               string         `json:"event_time"` // google.protobuf.Timestamp
	LocalOnly               bool           `json:"local_only"`
	NotificationPriority    string         `json:"notification_priority" enum:"PRIORITY_UNSPECIFIED PRIORITY_MIN PRIORITY_LOW PRIORITY_DEFAULT PRIORITY_HIGH PRIORITY_MAX"`
	DefaultSound            bool           `json:"default_sound"`
	DefaultVibrateTimings   bool           `json:"default_vibrate_timings"`
	DefaultLightSettings    bool           `json:"default_light_settings"`
	VibrateTimings          []string       `json:"vibrate_timings"` // google.protobuf.Duration each
	Visibility              string         `json:"visibility" enum:"VISIBILITY_UNSPECIFIED PRIVATE PUBLIC SECRET"`
	NotificationCount       int32          `json:"notification_count"`
	LightSettings           *lightSettings `json:"light_settings"`
	Image                   string         `json:"image"`
	BypassProxyNotification bool           `json:"bypass_proxy_notification"`
	Proxy                   string         `json:"proxy" enum:"PROXY_UNSPECIFIED ALLOW DENY IF_PRIORITY_LOWERED"`
}

type lightSettings struct {
	Color            *color `json:"color"`
	LightOnDuration  string `json:"light_on_duration"`
	LightOffDuration string `json:"light_off_duration"`
}

// color is google.type.Color.
type color struct {
	Red   float64 `json:"red"`
	Green float64 `json:"green"`
	Blue  float64 `json:"blue"`
	Alpha float64 `json:"alpha"`
}

type androidFCMOptions struct {
	AnalyticsLabel string `json:"analytics_label"`
}

type webpushConfig struct {
	Headers      map[string]string  `json:"headers"`
	Data         map[string]string  `json:"data"`
	Notification map[string]any     `json:"notification"` // google.protobuf.Struct: any object
	FCMOptions   *webpushFCMOptions `json:"fcm_options"`
}

type webpushFCMOptions struct {
	Link           string `json:"link"`
	AnalyticsLabel string `json:"analytics_label"`
}

type apnsConfig struct {
	Headers           map[string]string `json:"headers"`
	Payload           map[string]any    `json:"payload"` // google.protobuf.Struct: any object
	FCMOptions        *apnsFCMOptions   `json:"fcm_options"`
	LiveActivityToken string            `json:"live_activity_token"`
}

type apnsFCMOptions struct {
	AnalyticsLabel string `json:"analytics_label"`
	Image          string `json:"image"`
}

type fcmOptions struct {
	AnalyticsLabel string `json:"analytics_label"`
}

// violation is one google.rpc.BadRequest field violation; Field "" is left
// out of the answer, as Google leaves it out for the request's top level.
type violation struct {
	Field, Description string
}

// schema knows, for every struct type of the request, which JSON names map
// to which field. Built once per Server by reflection over sendRequest.
type schema struct {
	types map[reflect.Type]*structSchema
}

type structSchema struct {
	byName map[string]*fieldSchema // proto name and lowerCamel name
}

type fieldSchema struct {
	index int
	proto string   // the proto field name, as Google names it in errors
	enum  []string // allowed values of an enum field
}

func newSchema() *schema {
	sc := &schema{types: make(map[reflect.Type]*structSchema)}
	sc.add(reflect.TypeFor[sendRequest]())
	return sc
}

func (sc *schema) add(t reflect.Type) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		sc.add(t.Elem())
		return
	case reflect.Struct:
	default:
		return
	}
	if sc.types[t] != nil {
		return
	}
	ss := &structSchema{byName: make(map[string]*fieldSchema)}
	sc.types[t] = ss
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("json")
		fs := &fieldSchema{index: i, proto: name}
		if e := f.Tag.Get("enum"); e != "" {
			fs.enum = strings.Fields(e)
		}
		ss.byName[name] = fs
		ss.byName[lowerCamel(name)] = fs
		sc.add(f.Type)
	}
}

// lowerCamel is the proto JSON name of a field: collapse_key → collapseKey.
func lowerCamel(name string) string {
	var b strings.Builder
	up := false
	for _, r := range name {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// decode reads body into req strictly. A body that is not JSON is one
// violation; otherwise every unknown name and every value of the wrong type
// is one, in a stable order.
func (sc *schema) decode(body []byte, req *sendRequest) []violation {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return []violation{{Description: "Invalid JSON payload received. " + jsonSyntaxMessage(err)}}
	}
	if _, err := d.Token(); err != io.EOF {
		return []violation{{Description: "Invalid JSON payload received. Unexpected token after the request object."}}
	}
	if _, ok := v.(map[string]any); !ok {
		return []violation{{Description: `Invalid JSON payload received. Unknown name "": Root element must be a message.`}}
	}
	var out []violation
	sc.assign("", v, reflect.ValueOf(req).Elem(), nil, &out)
	return out
}

func jsonSyntaxMessage(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "Unexpected end of string."
	}
	if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		return fmt.Sprintf("Unexpected token at byte %d.", se.Offset)
	}
	return "Unexpected token."
}

// protoType is the type Google names in an "Invalid value" error.
func protoType(t reflect.Type) string {
	if t == reflect.TypeFor[color]() {
		return "type.googleapis.com/google.type.Color"
	}
	n := strings.ReplaceAll(t.Name(), "FCM", "Fcm")
	return "type.googleapis.com/google.firebase.fcm.v1." + strings.ToUpper(n[:1]) + n[1:]
}

// assign stores the decoded JSON value v into dst, whose field (if a struct
// field) is f, at path (the names as the request spelt them).
func (sc *schema) assign(path string, v any, dst reflect.Value, f *fieldSchema, out *[]violation) {
	if v == nil {
		// null is the field's default in proto JSON.
		return
	}
	bad := func(typ string) {
		raw, _ := json.Marshal(v)
		*out = append(*out, violation{Field: path,
			Description: fmt.Sprintf("Invalid value at '%s' (%s), %s", path, typ, raw)})
	}
	switch dst.Kind() {
	case reflect.Pointer:
		if _, ok := v.(map[string]any); !ok {
			bad(protoType(dst.Type().Elem()))
			return
		}
		p := reflect.New(dst.Type().Elem())
		sc.assign(path, v, p.Elem(), f, out)
		dst.Set(p)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			bad(protoType(dst.Type()))
			return
		}
		ss := sc.types[dst.Type()]
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			fs := ss.byName[k]
			if fs == nil {
				at := ""
				if path != "" {
					at = " at '" + path + "'"
				}
				*out = append(*out, violation{Field: path,
					Description: fmt.Sprintf("Invalid JSON payload received. Unknown name %q%s: Cannot find field.", k, at)})
				continue
			}
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			sc.assign(sub, obj[k], dst.Field(fs.index), fs, out)
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			bad("TYPE_STRING")
			return
		}
		if f != nil && f.enum != nil && !slices.Contains(f.enum, s) {
			bad("TYPE_ENUM")
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			bad("TYPE_BOOL")
			return
		}
		dst.SetBool(b)
	case reflect.Int32, reflect.Int64:
		// Proto JSON takes integers as numbers or decimal strings.
		var s string
		switch n := v.(type) {
		case json.Number:
			s = n.String()
		case string:
			s = n
		}
		i, err := strconv.ParseInt(s, 10, dst.Type().Bits())
		if err != nil {
			bad("TYPE_" + strings.ToUpper(dst.Kind().String()))
			return
		}
		dst.SetInt(i)
	case reflect.Float64:
		n, ok := v.(json.Number)
		x, err := n.Float64()
		if !ok || err != nil {
			bad("TYPE_FLOAT")
			return
		}
		dst.SetFloat(x)
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			bad("TYPE_STRING")
			return
		}
		s := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
		for i, e := range arr {
			sc.assign(path+"["+strconv.Itoa(i)+"]", e, s.Index(i), f, out)
		}
		dst.Set(s)
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			bad("type.googleapis.com/google.protobuf.Struct")
			return
		}
		if dst.Type().Elem().Kind() == reflect.Interface {
			// A google.protobuf.Struct: any JSON object is fine.
			dst.Set(reflect.ValueOf(obj))
			return
		}
		m := make(map[string]string, len(obj))
		// Google names a bad entry by its index in the request; the
		// decoded object has no order left, so this counts in key order.
		for i, k := range slices.Sorted(maps.Keys(obj)) {
			s, ok := obj[k].(string)
			if !ok {
				raw, _ := json.Marshal(obj[k])
				at := fmt.Sprintf("%s[%d].value", path, i)
				*out = append(*out, violation{Field: at,
					Description: fmt.Sprintf("Invalid value at '%s' (TYPE_STRING), %s", at, raw)})
				continue
			}
			m[k] = s
		}
		dst.Set(reflect.ValueOf(m))
	default:
		bad("TYPE_UNKNOWN")
	}
}
