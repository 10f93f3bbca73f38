package apns_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

// certSender is a certificate-auth Sender for endpoint, reporting to halt.
func certSender(t *testing.T, certPEM []byte, endpoint string, roots *x509.CertPool, halt *providers.Halt) *apns.Sender {
	t.Helper()
	s, err := apns.New(apns.Config{App: "cert", Environment: apns.Development, Topic: topic, CertPEM: certPEM,
		Endpoint: endpoint, RootCAs: roots, Halt: halt}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newHalt(t *testing.T) *providers.Halt {
	t.Helper()
	h, err := providers.NewHalt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A client certificate the server refuses in the TLS handshake (an expired
// or revoked one, or one of another CA) is a credential failure that halts
// the app, not a transport error retried forever. With TLS 1.3 the alert
// comes after the client's side of the handshake, on the first read.
func TestCertificateRefusedInTheTLSHandshakeIsACredentialFailure(t *testing.T) {
	issuer, err := apnssim.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := apnssim.NewTestCA() // the only CA the server accepts
	if err != nil {
		t.Fatal(err)
	}
	cert, err := issuer.Issue(topic, "development")
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("a request got through")
			}))
			srv.EnableHTTP2 = true
			srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: trusted.Pool, MaxVersion: version}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			halt := newHalt(t)
			s := certSender(t, cert, srv.URL, roots, halt)
			m := alert()
			m.Token = tok("a", 1)
			r := s.Send(context.Background(), m, 1)
			if r.Outcome != providers.CredentialFailure || !strings.HasPrefix(r.Reason, "TLS") || r.Err == nil ||
				!strings.Contains(r.Err.Error(), "remote error: tls:") {
				t.Fatalf("result %+v (%v), want a credential failure naming the TLS alert", r, r.Err)
			}
			if info, halted := halt.Halted("cert", "apns"); !halted || info.Reason != r.Reason {
				t.Fatalf("halt registry: %+v %v", info, halted)
			}
		})
	}
}

// serverCert is a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func serverCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// goAwayServer is an HTTP/2 server over TLS that answers the first request
// of connection i (0, 1, ...) with a GOAWAY carrying debug(i) and closes
// the connection, or, if debug(i) is "", answers every request 200.
func goAwayServer(t *testing.T, debug func(conn int) string) (endpoint string, roots *x509.CertPool) {
	t.Helper()
	cert, roots := serverCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveGoAway(nc, debug(i))
		}
	}()
	return "https://" + ln.Addr().String(), roots
}

func serveGoAway(nc net.Conn, debug string) {
	defer nc.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil {
		return
	}
	fr := http2.NewFramer(nc, nc)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	_ = fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				hbuf.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(),
					EndHeaders: true, EndStream: true})
			}
		case *http2.HeadersFrame:
			if debug != "" {
				// As Apple does once it has judged the credential.
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, []byte(debug))
				return
			}
		}
	}
}

// APNs may close a connection with a GOAWAY whose debug data gives the
// reason, as in its answers: a credential reason there is a credential
// failure that halts the app, a retryable one stays a transport error.
func TestGoAwayReasonIsClassified(t *testing.T) {
	for _, tc := range []struct {
		debug   string
		outcome providers.Outcome
		reason  string
	}{
		{`{"reason":"BadCertificate"}`, providers.CredentialFailure, "BadCertificate"},
		// Re-sent until the deadline: TransportError or Canceled.
		{`{"reason":"Shutdown"}`, providers.Retryable, ""},
	} {
		t.Run(tc.debug, func(t *testing.T) {
			endpoint, roots := goAwayServer(t, func(int) string { return tc.debug })
			halt := newHalt(t)
			// The certificate is not checked by this server; any will do.
			ca, err := apnssim.NewTestCA()
			if err != nil {
				t.Fatal(err)
			}
			pemCert, err := ca.Issue(topic, "development")
			if err != nil {
				t.Fatal(err)
			}
			s := certSender(t, pemCert, endpoint, roots, halt)
			m := alert()
			m.Token = tok("a", 1)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r := s.Send(ctx, m, 1)
			if r.Outcome != tc.outcome || tc.reason != "" && (r.Reason != tc.reason || !strings.Contains(r.Err.Error(), "GOAWAY")) {
				t.Fatalf("result %+v (%v), want %s %s", r, r.Err, tc.outcome, tc.reason)
			}
			if _, halted := halt.Halted("cert", "apns"); halted != (tc.outcome == providers.CredentialFailure) {
				t.Fatalf("halted %v", halted)
			}
		})
	}
}

// A certificate past its expiry is refused when the Sender is made, with
// the date: APNs would refuse it on every connection.
func TestExpiredCertificateIsRefusedAtNew(t *testing.T) {
	ca, err := apnssim.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(topic, "development")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := apns.Config{App: "cert", Environment: apns.Development, Topic: topic, CertPEM: certPEM}
	cfg.Clock = func() time.Time { return leaf.NotAfter.Add(time.Second) }
	_, err = apns.New(cfg, nil, nil)
	date := leaf.NotAfter.UTC().Format(time.RFC3339)
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), date) ||
		!strings.Contains(err.Error(), "CertPEM") {
		t.Fatalf("error %v, want one naming the expiry %s", err, date)
	}
	cfg.Clock = func() time.Time { return leaf.NotAfter.Add(-time.Second) }
	s, err := apns.New(cfg, nil, nil)
	if err != nil {
		t.Fatalf("certificate a second before its expiry: %v", err)
	}
	_ = s.Close()
}

// A .p8 key on another curve than P-256 is refused when the provider token
// is made, naming the curve, instead of panicking at the first signature.
func TestProviderTokenRefusesAKeyNotOnP256(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = apns.NewProviderToken(key, "ABCDEFGHIJ", "ABCDEFGHIJ", 45*time.Minute, nil)
	if err == nil || !strings.Contains(err.Error(), "P-384") {
		t.Fatalf("NewProviderToken: %v, want an error naming P-384", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = apns.New(apns.Config{App: "p384", Environment: apns.Development, Topic: topic,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), KeyID: "ABCDEFGHIJ", TeamID: "ABCDEFGHIJ"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "P-384") {
		t.Fatalf("New: %v, want an error naming P-384", err)
	}
}

// ExpiredProviderToken in a GOAWAY is handled as in an answer: the token
// is re-signed once and the request, which the server did not process,
// sent again.
func TestGoAwayExpiredProviderTokenReSignsAndReSends(t *testing.T) {
	endpoint, roots := goAwayServer(t, func(i int) string {
		if i == 0 {
			return `{"reason":"ExpiredProviderToken"}`
		}
		return ""
	})
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	s, err := apns.New(apns.Config{App: "tok", Environment: apns.Development, Topic: topic, KeyPEM: key.PEM,
		KeyID: key.KeyID, TeamID: key.TeamID, Endpoint: endpoint, RootCAs: roots, Clock: clk.Now}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Token().Current(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(25 * time.Minute) // old enough to re-sign
	m := alert()
	m.Token = tok("a", 1)
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("result %+v (%v), want delivered after re-signing", r, r.Err)
	}
	if n := s.Token().Refreshes(); n != 2 {
		t.Fatalf("%d tokens signed, want 2", n)
	}
}
