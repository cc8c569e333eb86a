package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

var flightsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "delay", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "distance", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "time", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}, nil)

// flights returns the first n records of the shared flights-200k.json, one
// JSON object each.
func flights(t testing.TB, n int) [][]byte {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "data", "flights-200k.json"))
	require.NoError(t, err)
	var recs []json.RawMessage
	require.NoError(t, json.Unmarshal(data, &recs))
	require.GreaterOrEqual(t, len(recs), n)
	out := make([][]byte, n)
	for i := range out {
		out[i] = recs[i]
	}
	return out
}

func cluster(t testing.TB, partitions int32, topics ...string) string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// produce writes values round-robin over the topic's partitions; the
// message with index i goes to partition i % partitions.
func produce(t testing.TB, addr, topic string, partitions int32, values [][]byte, opts ...kgo.Opt) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	require.NoError(t, err)
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: v}
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
}

type source struct {
	connectors.Source
	alloc *memory.CheckedAllocator
}

func open(t *testing.T, cfg string, f *pipeline.Format, cp connectors.Checkpoint) *source {
	t.Helper()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	src, err := kafka.New(connectors.Params{Endpoint: "t.k", Config: json.RawMessage(cfg), Format: f, Schema: flightsSchema, BatchSize: 1000, Allocator: alloc})
	require.NoError(t, err)
	require.NoError(t, src.Open(context.Background(), cp))
	s := &source{src, alloc}
	t.Cleanup(func() { s.Close(); alloc.AssertSize(t, 0) })
	return s
}

// readN reads until n records (or end of input) and returns them as JSON
// rows with their weight, the parse errors and the last checkpoint.
func (s *source) readN(t *testing.T, n int) ([]map[string]any, []connectors.ParseError, connectors.Checkpoint, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rows []map[string]any
	var errs []connectors.ParseError
	var cp connectors.Checkpoint
	for len(rows) < n {
		b, err := s.Read(ctx)
		if err != nil {
			return rows, errs, cp, err
		}
		rows = append(rows, toJSON(t, b.Record)...)
		b.Record.Release()
		errs = append(errs, b.Errors...)
		cp = b.Checkpoint
	}
	return rows, errs, cp, nil
}

func toJSON(t *testing.T, rec arrow.RecordBatch) []map[string]any {
	var b strings.Builder
	require.NoError(t, array.RecordToJSON(rec, &b))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	return out
}

// key identifies a flight row by its values, to compare multisets.
func key(m map[string]any) string { return fmt.Sprint(m["delay"], "/", m["distance"], "/", m["time"]) }

func keysOf(t *testing.T, values [][]byte) map[string]int {
	out := map[string]int{}
	for _, v := range values {
		var m map[string]any
		require.NoError(t, json.Unmarshal(v, &m))
		out[key(m)]++
	}
	return out
}

func keysOfRows(rows []map[string]any) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[key(r)]++
	}
	return out
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		want      []string
	}{
		{"missing everything", `{}`, []string{"transport.config.bootstrap.servers: required", "transport.config.topic: required"}},
		{"bad start_from", `{"bootstrap.servers": "b:9092", "topic": "t", "start_from": "middle"}`, []string{"transport.config.start_from"}},
		{"start_from and auto.offset.reset", `{"bootstrap.servers": "b:9092", "topic": "t", "start_from": "earliest", "auto.offset.reset": "latest"}`, []string{"transport.config.auto.offset.reset: give start_from or auto.offset.reset"}},
		{"seek on another topic", `{"bootstrap.servers": "b:9092", "topic": "t", "seek": [{"topic": "u", "partition": 0, "offset": 42}]}`, []string{`transport.config.seek[0].topic: "u" is not a topic`}},
		{"offsets with several topics", `{"bootstrap.servers": "b:9092", "topics": ["a", "b"], "start_from": {"offsets": [1]}}`, []string{"transport.config.start_from.offsets: offsets index the partitions of one topic"}},
		{"sasl without mechanism", `{"bootstrap.servers": "b:9092", "topic": "t", "security.protocol": "SASL_SSL", "sasl.username": "u"}`, []string{"transport.config.sasl.mechanism: required"}},
		{"unknown field", `{"bootstrap.servers": "b:9092", "topic": "t", "bootstrap_servers": "x"}`, []string{`unknown field "bootstrap_servers"`}},
		{"bad eof flag", `{"bootstrap.servers": "b:9092", "topic": "t", "enable.partition.eof": "yes"}`, []string{"transport.config.enable.partition.eof"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := connectors.NewRegistry()
			require.NoError(t, r.Register("kafka_input", kafka.New))
			err := r.CheckConnector(&pipeline.Table{}, &pipeline.Connector{Transport: pipeline.Transport{Name: "kafka_input", Config: json.RawMessage(tc.cfg)}}, flightsSchema)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	// Feldera's and librdkafka's spellings are accepted.
	_, err := kafka.New(connectors.Params{Config: json.RawMessage(`{"bootstrap.servers": "b:9092", "topic": "t", "auto.offset.reset": "smallest",
		"enable.partition.eof": "true", "group.id": "ignored", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
		"sasl.username": "u", "sasl.password": "p", "log_level": "info", "poller_threads": 3}`), Schema: flightsSchema, BatchSize: 10})
	require.NoError(t, err)
}

// Every message of 3 partitions is read once, across a close and a resume
// from the checkpoint of the last batch taken.
func TestResumeFromCheckpoint(t *testing.T) {
	addr := cluster(t, 3, "flights")
	values := flights(t, 3000)
	produce(t, addr, "flights", 3, values[:2000])
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest"}`, addr)

	s := open(t, cfg, nil, nil)
	first, errs, cp, err := s.readN(t, 1200)
	require.NoError(t, err)
	require.Empty(t, errs)
	require.NoError(t, s.Close())

	produce(t, addr, "flights", 3, values[2000:])
	s = open(t, cfg, nil, cp)
	rest, _, _, err := s.readN(t, 3000-len(first))
	require.NoError(t, err)
	require.Equal(t, keysOf(t, values), keysOfRows(append(first, rest...)))

	var c kafka.Checkpoint
	require.NoError(t, json.Unmarshal(cp, &c))
	require.Len(t, c.Offsets["flights"], 3, "the checkpoint has the next offset of every partition")
}

// start_from latest skips what is already in the topic; the resolved
// checkpoint pins "latest" to the moment of resolution.
func TestStartFromLatestResolvedOnce(t *testing.T) {
	addr := cluster(t, 2, "flights")
	values := flights(t, 300)
	produce(t, addr, "flights", 2, values[:100])
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights"}`, addr)), Schema: flightsSchema, BatchSize: 100})
	require.NoError(t, err)
	cp, err := src.(connectors.Resolver).Resolve(context.Background())
	require.NoError(t, err)
	require.JSONEq(t, `{"offsets": {"flights": {"0": 50, "1": 50}}}`, string(cp))

	produce(t, addr, "flights", 2, values[100:]) // after the resolution, before the first read
	s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights"}`, addr), nil, cp)
	rows, _, _, err := s.readN(t, 200)
	require.NoError(t, err)
	require.Equal(t, keysOf(t, values[100:]), keysOfRows(rows))
}

// enable.partition.eof: end of input at the end offsets of the first
// activation, with 3 partitions; later messages are not read.
func TestPartitionEOF(t *testing.T) {
	addr := cluster(t, 3, "flights")
	values := flights(t, 1000)
	produce(t, addr, "flights", 3, values[:900])
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": "true"}`, addr)
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(cfg), Schema: flightsSchema, BatchSize: 100})
	require.NoError(t, err)
	cp, err := src.(connectors.Resolver).Resolve(context.Background())
	require.NoError(t, err)
	produce(t, addr, "flights", 3, values[900:])

	s := open(t, cfg, nil, cp)
	rows, _, _, err := s.readN(t, 10_000)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Equal(t, keysOf(t, values[:900]), keysOfRows(rows))
}

// addPartitions adds n partitions to topic, as kafka-topics --alter would.
func addPartitions(t testing.TB, addr, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreatePartitions(context.Background(), n, topic)
	require.NoError(t, err)
	require.NoError(t, resp.Error())
}

// discoverEvery sets kafka.DiscoverInterval for the test.
func discoverEvery(t testing.TB, d time.Duration) {
	old := kafka.DiscoverInterval
	kafka.DiscoverInterval = d
	t.Cleanup(func() { kafka.DiscoverInterval = old })
}

// requireOffsets checks the next offset of every partition of "flights"
// in checkpoint cp.
func requireOffsets(t *testing.T, cp connectors.Checkpoint, want map[int32]int64) {
	t.Helper()
	var c kafka.Checkpoint
	require.NoError(t, json.Unmarshal(cp, &c))
	require.Equal(t, want, c.Offsets["flights"])
}

// Partitions added to the topic while the source runs are read from their
// start, every record once, and recorded in the checkpoint: a source
// resumed from it goes on at their offsets, and one resumed from a
// checkpoint taken before they were added (a crash that lost every commit
// since) reads them from their start.
func TestPartitionsAddedWhileRunning(t *testing.T) {
	discoverEvery(t, 100*time.Millisecond)
	addr := cluster(t, 2, "flights")
	values := flights(t, 1200)
	produce(t, addr, "flights", 2, values[:400]) // 200 into each of 2 partitions
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest"}`, addr)

	s := open(t, cfg, nil, nil)
	first, errs, before, err := s.readN(t, 400)
	require.NoError(t, err)
	require.Empty(t, errs)
	require.Equal(t, keysOf(t, values[:400]), keysOfRows(first))
	requireOffsets(t, before, map[int32]int64{0: 200, 1: 200})

	addPartitions(t, addr, "flights", 2)
	produce(t, addr, "flights", 4, values[400:800]) // 100 into each of 4 partitions
	second, _, cp, err := s.readN(t, 400)
	require.NoError(t, err, "the added partitions are read")
	require.Equal(t, keysOf(t, values[:800]), keysOfRows(append(first, second...)))
	requireOffsets(t, cp, map[int32]int64{0: 300, 1: 300, 2: 100, 3: 100})
	require.NoError(t, s.Close())

	produce(t, addr, "flights", 4, values[800:]) // 100 more into each
	s = open(t, cfg, nil, cp)
	third, _, last, err := s.readN(t, 400)
	require.NoError(t, err)
	require.Equal(t, keysOf(t, values[800:]), keysOfRows(third), "every partition resumes at its checkpointed offset")
	requireOffsets(t, last, map[int32]int64{0: 400, 1: 400, 2: 200, 3: 200})
	require.NoError(t, s.Close())

	s = open(t, cfg, nil, before)
	rest, _, last, err := s.readN(t, 800)
	require.NoError(t, err)
	require.Equal(t, keysOf(t, values[400:]), keysOfRows(rest), "partitions the checkpoint lacks are read from their start")
	requireOffsets(t, last, map[int32]int64{0: 400, 1: 400, 2: 200, 3: 200})
}

// enable.partition.eof fixes the partitions and their ends at first
// activation: partitions added later are not read, neither by the first
// activation nor after a resume.
func TestPartitionEOFIgnoresAddedPartitions(t *testing.T) {
	discoverEvery(t, 100*time.Millisecond)
	addr := cluster(t, 2, "flights")
	values := flights(t, 600)
	produce(t, addr, "flights", 2, values[:200])
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true}`, addr)
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(cfg), Schema: flightsSchema, BatchSize: 100})
	require.NoError(t, err)
	cp, err := src.(connectors.Resolver).Resolve(context.Background())
	require.NoError(t, err)
	addPartitions(t, addr, "flights", 2)
	produce(t, addr, "flights", 4, values[200:400])

	s := open(t, cfg, nil, cp)
	rows, _, last, err := s.readN(t, 10_000)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Equal(t, keysOf(t, values[:200]), keysOfRows(rows))
	requireOffsets(t, last, map[int32]int64{0: 100, 1: 100})
	require.NoError(t, s.Close())

	produce(t, addr, "flights", 4, values[400:])
	s = open(t, cfg, nil, last)
	rows, _, _, err = s.readN(t, 10_000)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Empty(t, rows)
}

// A transactional producer: commit markers occupy the last offsets, an
// aborted transaction's records are skipped, and end of input is still
// reached.
func TestPartitionEOFTransactional(t *testing.T) {
	addr := cluster(t, 3, "flights")
	values := flights(t, 600)
	txn := func(vals [][]byte, commit kgo.TransactionEndTry) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("sluice-test"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		require.NoError(t, err)
		defer cl.Close()
		ctx := context.Background()
		require.NoError(t, cl.BeginTransaction())
		for i, v := range vals {
			cl.Produce(ctx, &kgo.Record{Topic: "flights", Partition: int32(i % 3), Value: v}, nil)
		}
		require.NoError(t, cl.Flush(ctx))
		require.NoError(t, cl.EndTransaction(ctx, commit))
	}
	txn(values[:300], kgo.TryCommit)
	txn(values[300:450], kgo.TryAbort)
	txn(values[450:], kgo.TryCommit)

	s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true}`, addr), nil, nil)
	rows, _, cp, err := s.readN(t, 10_000)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	want := keysOf(t, append(append([][]byte{}, values[:300]...), values[450:]...))
	require.Equal(t, want, keysOfRows(rows))
	var c kafka.Checkpoint
	require.NoError(t, json.Unmarshal(cp, &c))
	require.Equal(t, c.End, c.Offsets, "the checkpoint ends past the last commit marker of every partition")
}

// Messages produced by kcat (librdkafka), a client nobody here wrote.
func TestKcatProducer(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (.ci/run installs the Debian package kcat)")
		}
		t.Skip("kcat is not installed: apt-get install kcat")
	}
	addr := cluster(t, 3, "flights")
	values := flights(t, 5000)
	var in strings.Builder
	for _, v := range values {
		in.Write(v)
		in.WriteByte('\n')
	}
	cmd := exec.Command(kcat, "-P", "-b", addr, "-t", "flights", "-K", "\t") // one message per line, spread over partitions
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "kcat: %s", out)

	s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": "true"}`, addr), nil, nil)
	rows, _, _, err := s.readN(t, 100_000)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Equal(t, keysOf(t, values), keysOfRows(rows))
}

// Malformed messages are reported with topic, partition and offset; the
// others are ingested.
func TestMalformedMessages(t *testing.T) {
	addr := cluster(t, 1, "flights")
	produce(t, addr, "flights", 1, [][]byte{
		[]byte(`{"delay": 1, "distance": 100, "time": 1.5}`),
		[]byte(`{"delay": 2, "distance": `),
		[]byte(`{"delay": "late", "distance": 100}`),
		[]byte(`{"delay": 3, "distance": 300, "time": 3.5}`),
		[]byte(`{"op": "c", "before": null}`),
	})
	s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true}`, addr), nil, nil)
	rows, errs, _, err := s.readN(t, 100)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Len(t, rows, 3) // the last message is a valid raw record with NULLs
	require.Len(t, errs, 2)
	require.Equal(t, "topic flights partition 0 offset 1", errs[0].Position)
	require.Contains(t, errs[0].Message, "invalid JSON")
	require.Equal(t, "topic flights partition 0 offset 2", errs[1].Position)
	require.Contains(t, errs[1].Message, "column delay")

	// The same last message as a Debezium event lacks "after".
	deb := &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "debezium"}`)}
	s = open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "seek": [{"topic": "flights", "partition": 0, "offset": 4}], "enable.partition.eof": true}`, addr), deb, nil)
	rows, errs, _, err = s.readN(t, 100)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Empty(t, rows)
	require.Len(t, errs, 1)
	require.Equal(t, "topic flights partition 0 offset 4", errs[0].Position)
	require.Contains(t, errs[0].Message, `op "c" without "after"`)
}

// An unreachable broker is a fatal error within the connect timeout.
func TestUnreachableBroker(t *testing.T) {
	old := kafka.ConnectTimeout
	kafka.ConnectTimeout = 2 * time.Second
	defer func() { kafka.ConnectTimeout = old }()
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(`{"bootstrap.servers": "127.0.0.1:1", "topic": "t"}`), Schema: flightsSchema, BatchSize: 10})
	require.NoError(t, err)
	start := time.Now()
	err = src.Open(context.Background(), nil)
	require.Error(t, err)
	require.True(t, errors.Is(err, connectors.ErrFatal), "want a fatal error, got %v", err)
	require.Contains(t, err.Error(), "unreachable")
	require.Less(t, time.Since(start), 10*time.Second)
}

// A topic that does not exist is a fatal error naming it.
func TestUnknownTopic(t *testing.T) {
	addr := cluster(t, 1, "flights")
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "nope"}`, addr)), Schema: flightsSchema, BatchSize: 10})
	require.NoError(t, err)
	err = src.Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.Contains(t, err.Error(), `topic "nope" does not exist`)
}

// SASL PLAIN and SCRAM against a broker that requires them; a wrong
// password is fatal.
func TestSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flights"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", "plain-secret"), kfake.Superuser("SCRAM-SHA-512", "scram-user", "scram-secret"))
	require.NoError(t, err)
	defer c.Close()
	addr := c.ListenAddrs()[0]
	values := flights(t, 10)
	produce(t, addr, "flights", 1, values, kgo.SASL(plainAuth("plain-user", "plain-secret")))
	for _, tc := range []struct{ mech, user, pass string }{{"PLAIN", "plain-user", "plain-secret"}, {"SCRAM-SHA-512", "scram-user", "scram-secret"}} {
		t.Run(tc.mech, func(t *testing.T) {
			s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true,
				"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": %q, "sasl.username": %q, "sasl.password": %q}`, addr, tc.mech, tc.user, tc.pass), nil, nil)
			rows, _, _, err := s.readN(t, 100)
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			require.Len(t, rows, 10)
		})
	}
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights",
		"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "plain-user", "sasl.password": "wrong"}`, addr)), Schema: flightsSchema, BatchSize: 10})
	require.NoError(t, err)
	err = src.Open(context.Background(), nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
}

func plainAuth(user, pass string) sasl.Mechanism {
	return plain.Auth{User: user, Pass: pass}.AsMechanism()
}

// start_from {"timestamp": ms} starts every partition at its first message
// at or after that time; a partition with none starts at its end.
func TestStartFromTimestamp(t *testing.T) {
	addr := cluster(t, 3, "flights")
	values := flights(t, 400)
	produce(t, addr, "flights", 3, values[:300])
	time.Sleep(20 * time.Millisecond)
	at := time.Now().UnixMilli()
	time.Sleep(20 * time.Millisecond)
	produce(t, addr, "flights", 2, values[300:]) // partitions 0 and 1 only
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": {"timestamp": %d}}`, addr, at)
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(cfg), Schema: flightsSchema, BatchSize: 100})
	require.NoError(t, err)
	cp, err := src.(connectors.Resolver).Resolve(context.Background())
	require.NoError(t, err)
	require.JSONEq(t, `{"offsets": {"flights": {"0": 100, "1": 100, "2": 100}}}`, string(cp))
	s := open(t, cfg, nil, cp)
	rows, _, _, err := s.readN(t, 100)
	require.NoError(t, err)
	require.Equal(t, keysOf(t, values[300:]), keysOfRows(rows))
}

// TLS with a CA file: the broker's certificate is verified against it.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flights"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	require.NoError(t, err)
	defer c.Close()
	addr := c.ListenAddrs()[0]
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	values := flights(t, 10)
	produce(t, addr, "flights", 1, values, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))

	s := open(t, fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true,
		"security.protocol": "SSL", "ssl.ca.location": %q}`, addr, ca), nil, nil)
	rows, _, _, err := s.readN(t, 100)
	require.ErrorIs(t, err, connectors.ErrEndOfInput)
	require.Equal(t, keysOf(t, values), keysOfRows(rows))

	// Without the CA the broker is not trusted: a fatal error, not a hang.
	old := kafka.ConnectTimeout
	kafka.ConnectTimeout = 2 * time.Second
	defer func() { kafka.ConnectTimeout = old }()
	src, err := kafka.New(connectors.Params{Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "flights", "security.protocol": "SSL"}`, addr)), Schema: flightsSchema, BatchSize: 10})
	require.NoError(t, err)
	require.ErrorIs(t, src.Open(context.Background(), nil), connectors.ErrFatal)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
