package apnssim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TestKey is an APNs auth key (.p8) made for tests and the demo.
type TestKey struct {
	KeyID   string // 10 characters, like Apple's
	TeamID  string // 10 characters, like Apple's
	Private *ecdsa.PrivateKey
	PEM     []byte // PKCS#8 "PRIVATE KEY", the .p8 format
}

// NewTestKey generates a P-256 key with random key and team IDs.
func NewTestKey() (*TestKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("apnssim: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("apnssim: encode key: %w", err)
	}
	return &TestKey{
		KeyID:   randomID(),
		TeamID:  randomID(),
		Private: k,
		PEM:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}, nil
}

// Public is the key the simulator verifies with.
func (k *TestKey) Public() *ecdsa.PublicKey { return &k.Private.PublicKey }

// WriteFile writes the key as AuthKey_<KeyID>.p8 in dir and returns the path.
func (k *TestKey) WriteFile(dir string) (string, error) {
	p := filepath.Join(dir, "AuthKey_"+k.KeyID+".p8")
	if err := os.WriteFile(p, k.PEM, 0o600); err != nil {
		return "", fmt.Errorf("apnssim: write key: %w", err)
	}
	return p, nil
}

// JWT signs a provider token issued at iat, as a sender would (for h2load
// and scripts).
func (k *TestKey) JWT(iat time.Time) (string, error) {
	return SignJWT(k.Private, k.KeyID, k.TeamID, iat)
}

// SignJWT makes an ES256 APNs provider token.
func SignJWT(key *ecdsa.PrivateKey, keyID, teamID string, iat time.Time) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": keyID})
	c, _ := json.Marshal(map[string]any{"iss": teamID, "iat": iat.Unix()})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("apnssim: sign token: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig), nil
}

func randomID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b strings.Builder
	for range 10 {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b.WriteByte(alphabet[n.Int64()])
	}
	return b.String()
}
