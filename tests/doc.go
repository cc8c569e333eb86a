// Package tests holds Sluice's end-to-end tests: a real Temporal server
// in-process (go.temporal.io/server/temporaltest), real workers (in-process
// and, for crash tests, separate processes killed with SIGKILL), real data
// from ../shared/data, and assertions on what the table store holds.
// The benchmark program is in tests/bench.
package tests
