// Package config loads Pushlane's configuration: one YAML file, then
// environment overrides (PUSHLANE_KAFKA__BROKERS=a:9092,b:9092 sets
// kafka.brokers; a double underscore separates levels), validated before
// anything starts. Errors name the offending key; secrets never appear in
// errors or in the output of Redacted.
package config

import (
	"time"
)

// Config is the whole configuration. Every command reads the same file and
// uses the parts it needs.
type Config struct {
	// Apps maps an app name (the campaign's "app") to its provider setup.
	// A name's dots are part of it (com.example.shop), not key levels. A
	// name must be one a campaign can write (schemas.CheckAppName).
	Apps       map[string]App `koanf:"apps"`
	Kafka      Kafka          `koanf:"kafka"`
	MySQL      MySQL          `koanf:"mysql"`
	ClickHouse ClickHouse     `koanf:"clickhouse"`
	HTTP       HTTP           `koanf:"http"`
	Log        Log            `koanf:"log"`
	Planner    Planner        `koanf:"planner"`
	Delay      Delay          `koanf:"delay"`
	Dispatcher Dispatcher     `koanf:"dispatcher"`
	Feedback   Feedback       `koanf:"feedback"`
}

// App is one app's provider setup, like a section of the original script's
// config. iOS devices go to APNs when apns is set, otherwise to FCM; Android
// devices go to FCM.
type App struct {
	APNS *APNS `koanf:"apns"`
	FCM  *FCM  `koanf:"fcm"`
	// RatePerSecond caps this app's sends per second across its providers
	// in one dispatcher; 0 means unlimited. Default 0.
	RatePerSecond int `koanf:"rate_per_second"`
	// Concurrency caps this app's in-flight sends in one dispatcher.
	// Default 200.
	Concurrency int `koanf:"concurrency"`
}

// APNS configures Apple Push Notification service for one app: token auth
// (key_file, key_id, team_id) or certificate auth (cert_file and
// cert_password), not both.
type APNS struct {
	// Environment is "development" (sandbox) or "production". Required.
	Environment string `koanf:"environment"`
	// Topic is the app's bundle id. Required.
	Topic string `koanf:"topic"`
	// KeyFile is the .p8 signing key; KeyID and TeamID identify it.
	KeyFile string `koanf:"key_file"`
	KeyID   string `koanf:"key_id"`
	TeamID  string `koanf:"team_id"`
	// CertFile is a .p12 or .pem client certificate; CertPassword unlocks a
	// .p12 (secret).
	CertFile     string `koanf:"cert_file"`
	CertPassword string `koanf:"cert_password"`
	// Endpoint overrides Apple's host, e.g. a simulator. Default empty: the
	// environment's Apple host.
	Endpoint string `koanf:"endpoint"`
	// CAFile is extra roots to trust for Endpoint (a simulator's CA).
	CAFile string `koanf:"ca_file"`
	// Connections is the most HTTP/2 connections to open; the next is
	// dialled only when the open ones carry as many streams as the server
	// allows. Default 2.
	Connections int `koanf:"connections"`
}

// FCM configures Firebase Cloud Messaging HTTP v1 for one app.
type FCM struct {
	// ProjectID is the Firebase project. Required.
	ProjectID string `koanf:"project_id"`
	// ServiceAccountFile is the service-account JSON key. Required.
	ServiceAccountFile string `koanf:"service_account_file"`
	// Endpoint overrides the base URL https://fcm.googleapis.com (the
	// sender adds /v1/projects/<id>/messages:send), e.g. a simulator.
	Endpoint string `koanf:"endpoint"`
	// CAFile is extra roots to trust for Endpoint and the token URI.
	CAFile string `koanf:"ca_file"`
	// Concurrency bounds in-flight requests. Default 200.
	Concurrency int `koanf:"concurrency"`
	// QuotaPerMinute is the project's FCM quota the token bucket stays
	// under. Default 600000 (Google's default).
	QuotaPerMinute int `koanf:"quota_per_minute"`
}

// Kafka is the backbone's connection and topics.
type Kafka struct {
	// Brokers are seed brokers. Default ["127.0.0.1:9092"].
	Brokers []string `koanf:"brokers"`
	// ClientID names the clients in broker logs. Default "pushlane".
	ClientID string `koanf:"client_id"`
	TLS      TLS    `koanf:"tls"`
	SASL     SASL   `koanf:"sasl"`
	Topics   Topics `koanf:"topics"`
	// GroupPrefix prefixes every consumer group and transactional id, so
	// several deployments can share a cluster. Default "pushlane".
	GroupPrefix string `koanf:"group_prefix"`
}

// TLS is client TLS for a connection. Files are PEM.
type TLS struct {
	Enabled            bool   `koanf:"enabled"`
	CAFile             string `koanf:"ca_file"`
	CertFile           string `koanf:"cert_file"`
	KeyFile            string `koanf:"key_file"`
	ServerName         string `koanf:"server_name"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
}

// SASL is Kafka SASL authentication. Mechanism is "", "plain",
// "scram-sha-256" or "scram-sha-512".
type SASL struct {
	Mechanism string `koanf:"mechanism"`
	Username  string `koanf:"username"`
	Password  string `koanf:"password"` // secret
}

// Topic is one topic's name and creation settings.
type Topic struct {
	Name       string `koanf:"name"`
	Partitions int32  `koanf:"partitions"`
	// Retention is the topic's retention.ms; 0 keeps the broker default.
	Retention time.Duration `koanf:"retention"`
}

// Topics names every topic. Defaults: pushlane.campaigns (6 partitions),
// pushlane.campaign-control (compacted, 1), pushlane.delay.tNN (ladder tiers,
// 6 each), pushlane.ready (12), pushlane.results (12),
// pushlane.dead-letter (3), pushlane.device-registrations (6).
type Topics struct {
	Campaigns     Topic `koanf:"campaigns"`
	Control       Topic `koanf:"control"`
	Delay         Topic `koanf:"delay"` // Name is the prefix of the tiers: <name>.t00, <name>.t01, ...
	Ready         Topic `koanf:"ready"`
	Results       Topic `koanf:"results"`
	DeadLetter    Topic `koanf:"dead_letter"`
	Registrations Topic `koanf:"registrations"`
	// ReplicationFactor for created topics; -1 uses the broker default,
	// anything else must be at least 1. Default -1.
	ReplicationFactor int16 `koanf:"replication_factor"`
}

// MySQL is the device store.
type MySQL struct {
	// DSN is a go-sql-driver DSN, e.g.
	// "pushlane:secret@tcp(127.0.0.1:3306)/pushlane". Its password is a
	// secret. parseTime and loc=UTC are added. Its charset and collation
	// must be safe with client-side escaping (CheckMySQLCharsets).
	// Required by planner and feedback.
	DSN string `koanf:"dsn"`
	TLS TLS    `koanf:"tls"`
	// MaxOpenConns bounds the pool. Default 8.
	MaxOpenConns int `koanf:"max_open_conns"`
}

// ClickHouse is the analytics store. Feedback requires Addr unless it
// writes its rows to a file (-rows-file); pushctl migrate skips it when empty.
type ClickHouse struct {
	Addr     []string `koanf:"addr"`
	Database string   `koanf:"database"` // default "pushlane"
	Username string   `koanf:"username"` // default "default"
	Password string   `koanf:"password"` // secret
	TLS      TLS      `koanf:"tls"`
}

// HTTP is the ops endpoint: /healthz, /readyz, /metrics.
type HTTP struct {
	// Addr to listen on. Default ":8080"; empty string disables.
	Addr string `koanf:"addr"`
}

// Log configures slog.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level"`
	// Format is json or text. Default json.
	Format string `koanf:"format"`
}

// Planner tunes cmd/planner.
type Planner struct {
	// PageSize is the number of device rows read per keyset page. Default 5000.
	PageSize int `koanf:"page_size"`
	// BatchesPerTransaction bounds one Kafka transaction; a bigger campaign
	// is planned in checkpointed chunks. Default 200.
	BatchesPerTransaction int `koanf:"batches_per_transaction"`
}

// Delay tunes the delay ladder.
type Delay struct {
	// Tiers is the number of ladder topics; tier k delays 2^k seconds.
	// Default 22 (covers 48 days).
	Tiers int `koanf:"tiers"`
}

// Dispatcher tunes cmd/dispatcher.
type Dispatcher struct {
	// MaxAttempts caps sends per device (first send included). Default 8:
	// with the providers' backoff the retries span at least 63 s.
	MaxAttempts int `koanf:"max_attempts"`
	// ChunkSize is the number of devices sent between checkpoints.
	// Default 100.
	ChunkSize int `koanf:"chunk_size"`
	// ResultsLinger is how long the results producer waits to fill a
	// batch before sending it. Default 20ms; 0 sends at once.
	ResultsLinger time.Duration `koanf:"results_linger"`
}

// Feedback tunes cmd/feedback.
type Feedback struct {
	// SuspectStrikes deactivates a token after this many suspect results
	// (BadDeviceToken, DeviceTokenNotForTopic); 0 never deactivates. Default 3.
	SuspectStrikes int `koanf:"suspect_strikes"`
	// FlushRows and FlushInterval bound a ClickHouse batch. Defaults 5000, 1s.
	FlushRows     int           `koanf:"flush_rows"`
	FlushInterval time.Duration `koanf:"flush_interval"`
}
