package apnssim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Apple's certificate extensions that say which APNs environment a push
// certificate is for.
func oidDevelopment() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 6, 3, 1}
}
func oidProduction() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 6, 3, 2}
}
func oidUID() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1} }

// TestCA issues APNs client certificates for certificate-auth tests.
type TestCA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool // give this to Config.ClientCAs
	PEM  []byte
}

// NewTestCA makes a CA.
func NewTestCA() (*TestCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pushlane test Apple WWDR CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("apnssim: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &TestCA{Cert: cert, Key: key, Pool: pool, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a push certificate for bundleID in environment ("development"
// or "production"; "" for a universal one), and returns the certificate and
// its private key as PEM: both blocks in one file, as apns2's FromPemBytes
// reads them.
func (ca *TestCA) Issue(bundleID, environment string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName: "Apple Push Services: " + bundleID,
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidUID(), Value: bundleID}},
		},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	switch environment {
	case "development":
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidDevelopment(), Value: []byte{0x05, 0x00}}}
	case "production":
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidProduction(), Value: []byte{0x05, 0x00}}}
	case "":
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidDevelopment(), Value: []byte{0x05, 0x00}}, {Id: oidProduction(), Value: []byte{0x05, 0x00}}}
	default:
		return nil, fmt.Errorf("apnssim: environment must be development, production or empty, got %q", environment)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("apnssim: issue certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return out, nil
}

// certIdentity is the bundle ID and environments a client certificate grants.
func certIdentity(c *x509.Certificate) (bundleID string, dev, prod bool) {
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidUID()) {
			if s, ok := n.Value.(string); ok {
				bundleID = s
			}
		}
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidDevelopment()) {
			dev = true
		}
		if e.Id.Equal(oidProduction()) {
			prod = true
		}
	}
	if !dev && !prod {
		dev, prod = true, true
	}
	return bundleID, dev, prod
}
