// Package e2e tests the whole pipeline on the real stack started by
// deploy/local: Kafka, MariaDB and ClickHouse, with cmd/planner,
// cmd/dispatcher and cmd/feedback running as separate processes, built once
// per test binary, and the APNs and FCM simulators running inside the test
// process so every accepted send can be counted per token.
//
// The package holds tests only (and the end-to-end benchmark that
// scripts/bench-e2e runs); this file exists so that the package has a
// non-test file and a place for this comment.
//
// The tests restart the Kafka broker (testenv.StackCtl), which internal/testenv
// serialises against other test processes; see the README of deploy/local.
package e2e
