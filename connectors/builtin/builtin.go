// Package builtin builds the registry of the transports that ship with
// Sluice. It is the one place that lists them.
package builtin

import (
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/datagen"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/connectors/file"
	"github.com/sluicehq/sluice/connectors/iceberg"
	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/connectors/postgres"
	"github.com/sluicehq/sluice/connectors/pubsub"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/connectors/url"
)

// Registry returns a new registry with the inputs datagen, file_input,
// url_input, kafka_input, s3_input, delta_table_input, iceberg_input,
// postgres_input and pub_sub_input (alias pubsub_input),
// and the outputs postgres_output, kafka_output, file_output and
// delta_table_output.
func Registry() *connectors.Registry {
	r := connectors.NewRegistry()
	for name, f := range map[string]connectors.Factory{
		"datagen":           datagen.New,
		"file_input":        file.New,
		"url_input":         url.New,
		"kafka_input":       kafka.New,
		"s3_input":          s3.New,
		"delta_table_input": delta.New,
		"iceberg_input":     iceberg.New,
		"postgres_input":    postgres.NewInput,
		"pub_sub_input":     pubsub.New,
		"pubsub_input":      pubsub.New, // an alias
	} {
		if err := r.Register(name, f); err != nil {
			panic(err) // the map above has unique keys
		}
	}
	for name, f := range map[string]connectors.SinkFactory{
		"postgres_output":    postgres.NewOutput,
		"kafka_output":       kafka.NewOutput,
		"file_output":        file.NewOutput,
		"delta_table_output": delta.NewOutput,
	} {
		if err := r.RegisterSink(name, f); err != nil {
			panic(err)
		}
	}
	return r
}
