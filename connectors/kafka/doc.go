// Package kafka is the kafka_input transport: it reads one or more Kafka
// topics with franz-go (github.com/twmb/franz-go/pkg/kgo), configured with
// Feldera's names (https://docs.feldera.com/connectors/sources/kafka) and
// librdkafka's property names for the client settings.
//
// Partitions are assigned explicitly: there is no consumer group, and the
// position of every partition (its next offset) lives in Sluice's
// checkpoint, committed with the records it covers, so a resumed connector
// neither skips nor re-reads a message. Partitions added to a topic while
// the connector runs are discovered (see DiscoverInterval), read from their
// start and join the checkpoint, except with enable.partition.eof, whose
// partitions are those of first activation.
//
// It is also the kafka_output transport (output.go): a transactional
// producer (https://docs.feldera.com/connectors/sinks/kafka) that writes
// one message per change and one Kafka transaction per Deliver commit,
// with the delivered table version and table id in headers on every
// message (VersionHeader, TableHeader), read back at Open, so that a
// read_committed consumer sees each change once across crashes (KIP-98's
// transactions; the position kept in the destination as KIP-618 does for
// sinks).
package kafka
