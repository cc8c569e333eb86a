// Package builtin builds the registry of the transports that ship with
// Sluice, for workers: package checks lists them, and this package adds
// the factories checks leaves out because they link heavy libraries
// (iceberg_input's reader, iceberg-go).
package builtin

import (
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/connectors/iceberg"
)

// Registry returns a new registry with the inputs datagen, file_input,
// url_input, kafka_input, s3_input, delta_table_input, iceberg_input,
// postgres_input and pub_sub_input (alias pubsub_input),
// and the outputs postgres_output, kafka_output, file_output and
// delta_table_output: checks.Registry with every factory.
func Registry() *connectors.Registry {
	r := checks.Registry()
	if err := r.Register("iceberg_input", iceberg.New); err != nil {
		panic(err) // checks registers iceberg_input as a check
	}
	return r
}
