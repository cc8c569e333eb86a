// Package checks is the registry of Sluice's builtin transports for
// programs that validate pipelines but run no connector: the sluice
// command line. It lists every transport that ships with Sluice (package
// builtin completes it into the worker's registry), with the factory of
// each except iceberg_input, which it only validates
// (icebergconfig.Check): iceberg-go's package initialization takes about
// 90 ms and 32 MB at every start of a program that links it, more than
// the rest of the command line's start together.
package checks

import (
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/datagen"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/connectors/file"
	"github.com/sluicehq/sluice/connectors/iceberg/icebergconfig"
	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/connectors/postgres"
	"github.com/sluicehq/sluice/connectors/pubsub"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/connectors/url"
)

// Registry returns a new registry with the inputs datagen, file_input,
// url_input, kafka_input, s3_input, delta_table_input, postgres_input
// and pub_sub_input (alias pubsub_input), the outputs postgres_output,
// kafka_output, file_output and delta_table_output, and iceberg_input
// as a check only ([connectors.Registry.RegisterCheck]): it validates
// every builtin transport's config, and New fails for iceberg_input.
func Registry() *connectors.Registry {
	r := connectors.NewRegistry()
	for name, f := range map[string]connectors.Factory{
		"datagen":           datagen.New,
		"file_input":        file.New,
		"url_input":         url.New,
		"kafka_input":       kafka.New,
		"s3_input":          s3.New,
		"delta_table_input": delta.New,
		"postgres_input":    postgres.NewInput,
		"pub_sub_input":     pubsub.New,
		"pubsub_input":      pubsub.New, // an alias
	} {
		if err := r.Register(name, f); err != nil {
			panic(err) // the map above has unique keys
		}
	}
	if err := r.RegisterCheck("iceberg_input", func(p connectors.Params) (any, error) { return icebergconfig.Check(p) }); err != nil {
		panic(err)
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
