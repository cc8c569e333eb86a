// Package metrics exports a Sluice worker's metrics in Prometheus'
// format: each connector's counters as its activities heartbeat them
// ([Collector], the worker's activities.Observer), the Temporal SDK's
// own metrics ([NewSDKHandler], for client.Options.MetricsHandler), and
// an HTTP server ([Serve]) for /metrics and /healthz. The worker command
// turns it on with --metrics-addr HOST:PORT.
//
// A connector's metrics carry the labels pipeline, table and connector.
// Their values are the connector's cumulative counters, the ones in
// `sluice connector ... stats` (sluice.Stats): they are part of the
// progress that the connector checkpoints, so they go on from where they
// were when the connector is paused and started again, or moves to
// another worker. A connector shows on the worker that runs it; one that
// moved stays on its former worker for up to [DefaultExpiry] with its
// last values, so aggregate over workers with max, not sum:
//
//	max by (pipeline, table, connector) (sluice_input_records_total)
package metrics
