package embedded

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

// Simulator identities of the demo app.
const (
	DemoBundleID   = "dev.pushlane.demo"
	DemoFCMProject = "pushlane-demo"
)

// Simulators are the APNs and FCM simulators with credentials generated for
// them, written to Dir so the senders load them as they would real ones.
type Simulators struct {
	APNs *apnssim.Server
	FCM  *fcmsim.Server
	// App is the app configuration that sends to both: APNs token auth
	// with the generated .p8 key, FCM with the generated service account,
	// each trusting its simulator's TLS certificate.
	App config.App
	// Dir holds the key, the service account and the CA certificates.
	Dir string
}

// StartSimulators generates the credentials into dir and starts both
// simulators on free loopback ports.
func StartSimulators(dir string, logger *slog.Logger) (*Simulators, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Simulators{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	key, err := apnssim.NewTestKey()
	if err != nil {
		return nil, err
	}
	keyFile, err := key.WriteFile(dir)
	if err != nil {
		return nil, err
	}
	s.APNs, err = apnssim.New(apnssim.Config{
		Keys:        map[string]*ecdsa.PublicKey{key.KeyID: key.Public()},
		TeamID:      key.TeamID,
		Topics:      []string{DemoBundleID},
		Environment: "development",
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	if err := s.APNs.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded: start APNs simulator: %w", err)
	}
	apnsCA := filepath.Join(dir, "apns-ca.pem")
	if err := os.WriteFile(apnsCA, s.APNs.CertPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("embedded: write APNs CA: %w", err)
	}

	// The account's token_uri must name the running simulator, and the
	// simulator must know the account's key before it starts: generate the
	// account first, then point its file at the simulator.
	acct, err := fcmsim.NewTestServiceAccount(DemoFCMProject, "https://127.0.0.1/token")
	if err != nil {
		return nil, err
	}
	s.FCM, err = fcmsim.New(fcmsim.Config{
		Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()},
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	if err := s.FCM.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded: start FCM simulator: %w", err)
	}
	var sa map[string]any
	if err := json.Unmarshal(acct.JSON, &sa); err != nil {
		return nil, fmt.Errorf("embedded: service account: %w", err)
	}
	sa["token_uri"] = s.FCM.TokenURL()
	if acct.JSON, err = json.MarshalIndent(sa, "", "  "); err != nil {
		return nil, fmt.Errorf("embedded: service account: %w", err)
	}
	saFile, err := acct.WriteFile(dir)
	if err != nil {
		return nil, err
	}
	fcmCA := filepath.Join(dir, "fcm-ca.pem")
	if err := os.WriteFile(fcmCA, s.FCM.CertPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("embedded: write FCM CA: %w", err)
	}

	s.App = config.App{
		APNS: &config.APNS{
			Environment: "development",
			Topic:       DemoBundleID,
			KeyFile:     keyFile,
			KeyID:       key.KeyID,
			TeamID:      key.TeamID,
			Endpoint:    s.APNs.URL(),
			CAFile:      apnsCA,
			Connections: 2,
		},
		FCM: &config.FCM{
			ProjectID:          DemoFCMProject,
			ServiceAccountFile: saFile,
			Endpoint:           s.FCM.URL(),
			CAFile:             fcmCA,
			Concurrency:        200,
			QuotaPerMinute:     600000,
		},
		Concurrency: 200,
	}
	ok = true
	return s, nil
}

// Close stops both simulators.
func (s *Simulators) Close() error {
	var errs []error
	if s.APNs != nil {
		errs = append(errs, s.APNs.Close())
	}
	if s.FCM != nil {
		errs = append(errs, s.FCM.Close())
	}
	return errors.Join(errs...)
}
