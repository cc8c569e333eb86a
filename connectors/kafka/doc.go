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
package kafka
