package fcmsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// TestServiceAccount is a Google service account made for tests and the
// demo, with an RSA key the simulator verifies.
type TestServiceAccount struct {
	ProjectID   string
	ClientEmail string
	KeyID       string
	Private     *rsa.PrivateKey
	// JSON is the service-account file, token_uri pointing at the simulator.
	JSON []byte
}

// NewTestServiceAccount makes an account of project whose token_uri is
// tokenURL (Server.TokenURL()).
func NewTestServiceAccount(project, tokenURL string) (*TestServiceAccount, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("fcmsim: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	var kid [20]byte
	_, _ = rand.Read(kid[:])
	a := &TestServiceAccount{
		ProjectID:   project,
		ClientEmail: "pushlane-sender@" + project + ".iam.gserviceaccount.com",
		KeyID:       hex.EncodeToString(kid[:]),
		Private:     k,
	}
	a.JSON, err = json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  project,
		"private_key_id":              a.KeyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                a.ClientEmail,
		"client_id":                   "100000000000000000000",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURL,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	}, "", "  ")
	return a, err
}

// Account is what the simulator needs to know about it.
func (a *TestServiceAccount) Account() Account {
	return Account{ProjectID: a.ProjectID, PublicKey: &a.Private.PublicKey}
}

// WriteFile writes the JSON as <project>-service-account.json in dir.
func (a *TestServiceAccount) WriteFile(dir string) (string, error) {
	p := filepath.Join(dir, a.ProjectID+"-service-account.json")
	if err := os.WriteFile(p, a.JSON, 0o600); err != nil {
		return "", fmt.Errorf("fcmsim: write service account: %w", err)
	}
	return p, nil
}
