// Package embedded runs Pushlane's infrastructure inside one process for the
// demo and its tests: franz-go's kfake broker, a go-mysql-server store
// holding the real MySQL schema and seeded demo devices, and the APNs and
// FCM simulators with generated credentials. Nothing here is for production:
// only cmd/pushlane and tests import it, so the production stage commands
// never link go-mysql-server.
package embedded
