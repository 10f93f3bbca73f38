package apnssim

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

type jwtFields struct {
	kid, iss string
	iat      int64
}

// parseJWT checks an APNs provider token the way Apple documents it: header
// {alg: ES256, kid}, claims {iss, iat}, ES256 signature by the key kid names.
func parseJWT(bearer string, keys map[string]*ecdsa.PublicKey) (jwtFields, error) {
	var out jwtFields
	parts := strings.Split(bearer, ".")
	if len(parts) != 3 {
		return out, errors.New("not a JWT")
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(parts[0])
	if err != nil {
		return out, fmt.Errorf("header: %w", err)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return out, fmt.Errorf("header: %w", err)
	}
	if h.Alg != "ES256" {
		return out, fmt.Errorf("alg %q, want ES256", h.Alg)
	}
	key, ok := keys[h.Kid]
	if !ok {
		return out, fmt.Errorf("unknown kid %q", h.Kid)
	}
	cb, err := enc.DecodeString(parts[1])
	if err != nil {
		return out, fmt.Errorf("claims: %w", err)
	}
	var c struct {
		Iss string `json:"iss"`
		Iat *int64 `json:"iat"`
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		return out, fmt.Errorf("claims: %w", err)
	}
	if c.Iat == nil {
		return out, errors.New("claims: no iat")
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return out, errors.New("signature: not 64 bytes of base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(key, sum[:], r, s) {
		return out, errors.New("signature does not verify")
	}
	return jwtFields{kid: h.Kid, iss: c.Iss, iat: *c.Iat}, nil
}
