// Package workflows holds the Pipeline workflow: the durable control plane
// of one pipeline (workflow ID "pipeline-<name>"). Its state is small:
// the pipeline's Running/Paused state, each connector's Running/Paused
// state, finished flags, checkpoints and counters. It runs one Ingest
// activity per active connector, starts start_after dependents when their
// labels' connectors finish, and answers the signals, updates and queries
// named in this package's constants, following Feldera's connector
// orchestration (https://docs.feldera.com/connectors/orchestration).
package workflows
