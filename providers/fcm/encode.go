package fcm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
)

// sdkEncoder has firebase-admin-go build the request for a message, without
// sending it: its messaging.Client runs over a RoundTripper that keeps the
// request and answers a message name. So every prepared message has passed
// the SDK's own validation (validateMessage, unexported: Send is the only way
// in) and its body and headers are byte for byte what Client.Send would put
// on the wire. The hot path then sends that body with the token (and, for a
// message with an expiration, the lifetime left) spliced in, over the
// sender's own HTTP/2 connections.
type sdkEncoder struct {
	client *messaging.Client
}

// captureEndpoint is where the SDK believes it sends; nothing dials it.
const captureEndpoint = "https://sdk-capture.invalid/v1"

type captureKey struct{}

// captured is one request the SDK built.
type captured struct {
	body   []byte
	header http.Header
}

// captureTransport keeps the request of the captured slot in its context
// and answers as FCM does.
type captureTransport struct{}

func (captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	slot, _ := r.Context().Value(captureKey{}).(*captured)
	if slot == nil {
		return nil, errors.New("fcm: SDK request outside an encode call")
	}
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		slot.body = b
	}
	slot.header = r.Header.Clone()
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		Body:    io.NopCloser(strings.NewReader(`{"name":"projects/capture/messages/0"}`)),
		Request: r}, nil
}

func newSDKEncoder(projectID string) (*sdkEncoder, error) {
	ctx := context.Background()
	// option.WithHTTPClient: no credentials are looked up and no auth
	// transport is wrapped around captureTransport; ProjectID set: no
	// Application Default Credentials lookup either.
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID},
		option.WithHTTPClient(&http.Client{Transport: captureTransport{}}), option.WithEndpoint(captureEndpoint))
	if err != nil {
		return nil, fmt.Errorf("fcm: firebase app: %w", err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: firebase messaging client: %w", err)
	}
	return &sdkEncoder{client: c}, nil
}

// request has the SDK validate m (its Token set) and returns the request it
// would send.
func (e *sdkEncoder) request(m *messaging.Message) (*captured, error) {
	slot := &captured{}
	ctx := context.WithValue(context.Background(), captureKey{}, slot)
	if _, err := e.client.Send(ctx, m); err != nil {
		return nil, err
	}
	if slot.header == nil || slot.body == nil {
		return nil, errors.New("fcm: the SDK sent no request")
	}
	return slot, nil
}

// template encodes m for any token: the SDK's body split around the token.
func (e *sdkEncoder) template(m *messaging.Message) (head, tail []byte, err error) {
	t, err := e.templateTTL(m, noTTL)
	return t.head, t.tail, err
}

// ttlField names the lifetime a template leaves open, for each send to
// write the whole seconds left in.
type ttlField int

const (
	noTTL      ttlField = iota
	androidTTL          // android.ttl, "<seconds>s"; m.Android must be set
	webpushTTL          // webpush.headers.TTL, "<seconds>"; m.Webpush must be set
)

// ttlPart is the part of a template the lifetime is in.
type ttlPart int

const (
	inNeither ttlPart = iota // no lifetime to write
	inHead
	inTail
)

// bodyTemplate is the SDK's body split around the token, and the place of
// the lifetime (offset ttlAt of the part ttlIn) with its digits cut out.
type bodyTemplate struct {
	head, tail []byte
	ttlIn      ttlPart
	ttlAt      int
}

// templateTTL encodes m for any token, and for any lifetime in field f.
// The token placeholder is random, and must occur exactly once, as the
// message's token value: no content of m can be mistaken for it. The
// lifetime's placeholder is a random ten-digit number of seconds (valid
// for the SDK, which refuses only negative ones), held to the same rule;
// the SDK writes whole seconds as their decimal digits, so a send writing
// its own seconds there gets the SDK's encoding of that lifetime.
func (e *sdkEncoder) templateTTL(m *messaging.Message, f ttlField) (bodyTemplate, error) {
	for range 4 {
		msg := *m
		var r [12]byte
		_, _ = rand.Read(r[:])
		ph := "pushlane-token-" + hex.EncodeToString(r[:])
		msg.Token = ph
		secs := ttlPlaceholder()
		digits := strconv.FormatInt(secs, 10)
		var prefix, suffix string // around the digits
		switch f {
		case androidTTL:
			a := *msg.Android
			d := time.Duration(secs) * time.Second
			a.TTL = &d
			msg.Android = &a
			prefix, suffix = `"ttl":"`, `s"`
		case webpushTTL:
			w := *msg.Webpush
			w.Headers = maps.Clone(w.Headers)
			if w.Headers == nil {
				w.Headers = map[string]string{}
			}
			w.Headers["TTL"] = digits
			msg.Webpush = &w
			prefix, suffix = `"TTL":"`, `"`
		}
		quotedTTL := []byte(prefix + digits + suffix)
		c, err := e.request(&msg)
		if err != nil {
			return bodyTemplate{}, err
		}
		quoted := []byte(`"token":"` + ph + `"`)
		if bytes.Count(c.body, []byte(ph)) != 1 || bytes.Count(c.body, quoted) != 1 {
			continue
		}
		if f != noTTL && (bytes.Count(c.body, []byte(digits)) != 1 || bytes.Count(c.body, quotedTTL) != 1) {
			continue
		}
		i := bytes.Index(c.body, quoted) + len(`"token":`) // the token's opening quote
		end := i + len(ph) + 2                             // after its closing quote
		if f == noTTL {
			return bodyTemplate{head: c.body[:i:i], tail: c.body[end:]}, nil
		}
		j := bytes.Index(c.body, quotedTTL) + len(prefix) // the digits
		k := j + len(digits)
		if j < i {
			head := append(append(make([]byte, 0, i-len(digits)), c.body[:j]...), c.body[k:i]...)
			return bodyTemplate{head: head, tail: c.body[end:], ttlIn: inHead, ttlAt: j}, nil
		}
		tail := append(append(make([]byte, 0, len(c.body)-end-len(digits)), c.body[end:j]...), c.body[k:]...)
		return bodyTemplate{head: c.body[:i:i], tail: tail, ttlIn: inTail, ttlAt: j - end}, nil
	}
	return bodyTemplate{}, errors.New("fcm: no place for the token or the ttl in the SDK's encoding")
}

// ttlPlaceholder is a random number of seconds, ten digits long (so at
// most 292 years, time.Duration's limit).
func ttlPlaceholder() int64 {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return 1_000_000_000 + int64(binary.BigEndian.Uint64(r[:])%8_000_000_000)
}

// wireHeaders are the SDK's request headers the sender copies: the body's
// Content-Type, and X-Goog-Api-Format-Version: 2, which asks FCM for the
// detailed error format whose FcmError codes Classify reads
// (firebase-admin-go#197). The SDK's client-identification headers
// (X-Firebase-Client, X-Goog-Api-Client) are left out: metrics for Google,
// and two more header fields to encode and decode per request.
var wireHeaders = []string{"Content-Type", "X-Goog-Api-Format-Version"}

// headers returns the SDK's values of wireHeaders, keys in lower case
// (HTTP/2 then encodes them without copying).
func (e *sdkEncoder) headers() (http.Header, error) {
	c, err := e.request(&messaging.Message{Token: "t"})
	if err != nil {
		return nil, err
	}
	h := make(http.Header, len(wireHeaders))
	for _, k := range wireHeaders {
		v := c.header.Values(k)
		if len(v) == 0 {
			return nil, fmt.Errorf("fcm: the SDK sent no %s header", k)
		}
		h[strings.ToLower(k)] = v
	}
	return h, nil
}
