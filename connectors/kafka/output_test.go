package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/kafka"
	"github.com/sluicehq/sluice/pipeline"
)

var usersSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// changes returns a change batch of ids [from, to) with the given weight.
func changes(alloc memory.Allocator, version, from, to, weight int64) connectors.ChangeBatch {
	b := array.NewRecordBuilder(alloc, pipeline.WithWeight(usersSchema))
	defer b.Release()
	for id := from; id < to; id++ {
		b.Field(0).(*array.Int64Builder).Append(id)
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("user %d", id))
		b.Field(2).(*array.Int64Builder).Append(weight)
	}
	return connectors.ChangeBatch{Record: b.NewRecordBatch(), Version: version, Time: time.Now()}
}

func write(t *testing.T, s connectors.Sink, alloc memory.Allocator, version, from, to, weight int64) error {
	t.Helper()
	b := changes(alloc, version, from, to, weight)
	defer b.Record.Release()
	return s.Write(context.Background(), b)
}

func newOutput(t *testing.T, addr, topic string, pk []string) connectors.Sink {
	t.Helper()
	cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": %q, "headers": [{"key": "origin", "value": "sluice"}, {"key": "bytes", "value": [1, 2]}]}`, addr, topic)
	s, err := kafka.NewOutput(connectors.SinkParams{Endpoint: "users.out", Pipeline: "p", Table: "users", Connector: "out",
		Config: json.RawMessage(cfg), Schema: usersSchema, PrimaryKey: pk})
	require.NoError(t, err)
	return s
}

// readCommitted returns every committed data message of the topic, read
// with read_committed up to each partition's last stable offset.
func readCommitted(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	require.NoError(t, err)
	need := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			need[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(100*time.Millisecond))
	require.NoError(t, err)
	defer cl.Close()
	var out []*kgo.Record
	for len(need) > 0 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "waiting for partitions %v", need)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= need[r.Partition]-1 {
				delete(need, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return "<none>"
}

// valuesOf returns the message values sorted.
func valuesOf(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	sort.Strings(out)
	return out
}

func want(from, to int64, op string) []string {
	var out []string
	for id := from; id < to; id++ {
		out = append(out, fmt.Sprintf(`{%q:{"id":%d,"name":"user %d"}}`, op, id, id))
	}
	sort.Strings(out)
	return out
}

func sorted(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	sort.Strings(out)
	return out
}

func TestOutputConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"no topic", `{"bootstrap.servers": "b:9092"}`, "transport.config.topic"},
		{"no brokers", `{"topic": "t"}`, "transport.config.bootstrap.servers"},
		{"bad header", `{"bootstrap.servers": "b:9092", "topic": "t", "headers": [{"key": "k", "value": {"a": 1}}]}`, "headers"},
		{"own header", `{"bootstrap.servers": "b:9092", "topic": "t", "headers": [{"key": "sluice-version", "value": "1"}]}`, "headers[0].key"},
		{"unknown field", `{"bootstrap.servers": "b:9092", "topic": "t", "acks": "1"}`, "acks"},
		{"compression", `{"bootstrap.servers": "b:9092", "topic": "t", "compression.type": "brotli"}`, "compression.type"},
		{"sasl without mechanism", `{"bootstrap.servers": "b:9092", "topic": "t", "security.protocol": "SASL_SSL", "sasl.username": "u"}`, "sasl.mechanism"},
		{"format", `{"bootstrap.servers": "b:9092", "topic": "t"}`, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := connectors.SinkParams{Config: json.RawMessage(tc.cfg), Schema: usersSchema}
			if tc.name == "format" {
				p.Format = &pipeline.Format{Name: "parquet"}
			}
			_, err := kafka.NewOutput(p)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := kafka.NewOutput(connectors.SinkParams{Config: json.RawMessage(`{"bootstrap.servers": "b:9092", "topic": "t", "linger.ms": "5",
		"compression.type": "zstd", "transaction.timeout.ms": 60000, "fault_tolerance": {}, "log_level": "info"}`), Schema: usersSchema})
	require.NoError(t, err)
}

// Several commits, read back with read_committed: each change exactly
// once, keyed by the primary key, with the static headers and the
// version; a new sink's Open returns the last committed version.
func TestOutputCommits(t *testing.T) {
	addr := cluster(t, 3, "users")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := context.Background()
	s := newOutput(t, addr, "users", []string{"id"})
	require.Equal(t, connectors.ExactlyOnce, s.(connectors.Guaranteed).Guarantee())
	delivered, err := s.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(-1), delivered, "an empty topic holds no version")

	require.NoError(t, write(t, s, alloc, 1, 0, 100, 1))
	require.NoError(t, s.Commit(ctx, 1))
	require.NoError(t, write(t, s, alloc, 2, 100, 200, 1))
	require.NoError(t, write(t, s, alloc, 3, 0, 10, -1))
	require.NoError(t, s.Commit(ctx, 3))
	require.NoError(t, s.Commit(ctx, 4)) // a version without changes sends nothing
	require.NoError(t, s.Close())

	recs := readCommitted(t, addr, "users")
	require.Equal(t, sorted(want(0, 200, "insert"), want(0, 10, "delete")), valuesOf(recs))
	for _, r := range recs {
		var v map[string]map[string]any
		require.NoError(t, json.Unmarshal(r.Value, &v))
		for _, row := range v {
			require.Equal(t, fmt.Sprintf(`{"id":%v}`, row["id"]), string(r.Key))
			id := int64(row["id"].(float64))
			ver := "1"
			switch {
			case v["delete"] != nil:
				ver = "3"
			case id >= 100:
				ver = "2"
			}
			require.Equal(t, ver, header(r, kafka.VersionHeader))
		}
		require.Equal(t, "sluice", header(r, "origin"))
		require.Equal(t, "\x01\x02", header(r, "bytes"))
	}
	// The same key always lands in the same partition.
	part := map[string]int32{}
	for _, r := range recs {
		if p, ok := part[string(r.Key)]; ok {
			require.Equal(t, p, r.Partition)
		}
		part[string(r.Key)] = r.Partition
	}

	s2 := newOutput(t, addr, "users", []string{"id"})
	delivered, err = s2.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), delivered)
	require.NoError(t, s2.Close())
}

// A table without a primary key writes messages without a key.
func TestOutputNoKey(t *testing.T) {
	addr := cluster(t, 1, "users")
	ctx := context.Background()
	s := newOutput(t, addr, "users", nil)
	_, err := s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 7, 0, 5, 1))
	require.NoError(t, s.Commit(ctx, 7))
	require.NoError(t, s.Close())
	recs := readCommitted(t, addr, "users")
	require.Len(t, recs, 5)
	for _, r := range recs {
		require.Nil(t, r.Key)
	}
}

// Changes written and then closed without Commit are aborted: invisible
// to read_committed, and the position does not move.
func TestOutputCloseWithoutCommit(t *testing.T) {
	addr := cluster(t, 2, "users")
	ctx := context.Background()
	s := newOutput(t, addr, "users", []string{"id"})
	_, err := s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 1, 0, 50, 1))
	require.NoError(t, s.Commit(ctx, 1))
	require.NoError(t, write(t, s, memory.DefaultAllocator, 2, 50, 100, 1))
	require.NoError(t, s.Close())

	require.Equal(t, want(0, 50, "insert"), valuesOf(readCommitted(t, addr, "users")))
	s = newOutput(t, addr, "users", []string{"id"})
	delivered, err := s.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), delivered)
	require.NoError(t, s.Close())
}

// A second sink with the same transactional id (a retried activity while
// a stale worker still runs, or after one was killed mid-transaction)
// fences the first: the first's open transaction is aborted and
// invisible, its Commit fails, and the position is the last commit's.
func TestOutputFencing(t *testing.T) {
	addr := cluster(t, 3, "users")
	ctx := context.Background()
	a := newOutput(t, addr, "users", []string{"id"})
	_, err := a.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, a, memory.DefaultAllocator, 1, 0, 60, 1))
	require.NoError(t, a.Commit(ctx, 1))
	require.NoError(t, write(t, a, memory.DefaultAllocator, 2, 60, 120, 1))
	// Wait until a's uncommitted messages are in the log.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	defer cl.Close()
	require.Eventually(t, func() bool {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "users")
		if err != nil {
			return false
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n >= 120+3 // 120 messages and a commit marker per partition
	}, 10*time.Second, 20*time.Millisecond)

	b := newOutput(t, addr, "users", []string{"id"})
	delivered, err := b.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), delivered, "a's open transaction was aborted by the fence")
	require.Error(t, a.Commit(ctx, 2), "a is fenced")
	require.NoError(t, a.Close())
	require.Equal(t, want(0, 60, "insert"), valuesOf(readCommitted(t, addr, "users")))

	require.NoError(t, write(t, b, memory.DefaultAllocator, 2, 60, 120, 1))
	require.NoError(t, b.Commit(ctx, 2))
	require.NoError(t, b.Close())
	require.Equal(t, want(0, 120, "insert"), valuesOf(readCommitted(t, addr, "users")))
	c := newOutput(t, addr, "users", []string{"id"})
	delivered, err = c.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), delivered)
	require.NoError(t, c.Close())
}

// A missing topic is a fatal error at Open.
func TestOutputUnknownTopic(t *testing.T) {
	addr := cluster(t, 1, "users")
	s := newOutput(t, addr, "nope", nil)
	_, err := s.Open(context.Background())
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.Contains(t, err.Error(), `topic "nope" does not exist`)
	require.NoError(t, s.Close())
}

// kcat (librdkafka) as an independent read_committed consumer sees the
// committed changes exactly once and none of an aborted transaction.
func TestOutputKcatConsumer(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (.ci/run installs the Debian package kcat)")
		}
		t.Skip("kcat is not installed: apt-get install kcat")
	}
	addr := cluster(t, 3, "users")
	ctx := context.Background()
	s := newOutput(t, addr, "users", []string{"id"})
	_, err = s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 1, 0, 1000, 1))
	require.NoError(t, s.Commit(ctx, 1))
	require.NoError(t, write(t, s, memory.DefaultAllocator, 2, 1000, 1500, 1))
	require.NoError(t, s.Close()) // aborted
	s = newOutput(t, addr, "users", []string{"id"})
	_, err = s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 2, 0, 100, -1))
	require.NoError(t, s.Commit(ctx, 2))
	require.NoError(t, s.Close())

	cmd := exec.Command(kcat, "-C", "-b", addr, "-t", "users", "-X", "isolation.level=read_committed", "-e", "-q",
		"-f", "%k\t%h\t%s\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "kcat: %s", out)
	var values []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		require.Len(t, f, 3, "line %q", line)
		require.Contains(t, f[1], "origin=sluice")
		require.Contains(t, f[1], kafka.VersionHeader+"=")
		values = append(values, f[2])
	}
	sort.Strings(values)
	require.Equal(t, sorted(want(0, 1000, "insert"), want(0, 100, "delete")), values)
}

// Open finds the position behind a tail of aborted transactions longer
// than its first read-back window, and in a partition whose last commit
// is older than another's.
func TestOutputPositionBehindAborts(t *testing.T) {
	addr := cluster(t, 2, "users")
	ctx := context.Background()
	s := newOutput(t, addr, "users", []string{"id"})
	_, err := s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 5, 0, 40, 1))
	require.NoError(t, s.Commit(ctx, 5))
	require.NoError(t, s.Close())
	for i := range 6 { // 6 aborted transactions of 20 messages each
		s = newOutput(t, addr, "users", []string{"id"})
		delivered, err := s.Open(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(5), delivered, "after %d aborts", i)
		require.NoError(t, write(t, s, memory.DefaultAllocator, 6, 100, 120, 1))
		require.NoError(t, s.Close())
	}
	require.Equal(t, want(0, 40, "insert"), valuesOf(readCommitted(t, addr, "users")))
}

// A change the format cannot encode (a delete in json raw) is counted as
// an encode error and not sent; the others are.
func TestOutputEncodeErrors(t *testing.T) {
	addr := cluster(t, 1, "users")
	ctx := context.Background()
	s, err := kafka.NewOutput(connectors.SinkParams{Pipeline: "p", Table: "users", Connector: "raw",
		Config: json.RawMessage(fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "users"}`, addr)),
		Format: &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "raw"}`)}, Schema: usersSchema})
	require.NoError(t, err)
	_, err = s.Open(ctx)
	require.NoError(t, err)
	require.NoError(t, write(t, s, memory.DefaultAllocator, 1, 0, 3, 1))
	require.NoError(t, write(t, s, memory.DefaultAllocator, 1, 0, 2, -1))
	require.NoError(t, s.Commit(ctx, 1))
	require.NoError(t, s.Close())
	bytes, encodeErrors := s.(connectors.SinkMetrics).Transmitted()
	require.Equal(t, int64(2), encodeErrors)
	require.Positive(t, bytes)
	require.Len(t, readCommitted(t, addr, "users"), 3)
}

// BenchmarkOutputVsKcat sends 1,000,000 JSON changes through kafka_output
// (one transaction) and has kcat produce the same lines, each into its own
// topic of an in-process kfake cluster, and reports the time ratio:
//
//	go test -run '^$' -bench OutputVsKcat -benchtime 1x ./connectors/kafka/
func BenchmarkOutputVsKcat(b *testing.B) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		b.Skip("kcat is not installed")
	}
	const n, batch = 1_000_000, 10_000
	ctx := context.Background()
	var batches []connectors.ChangeBatch
	for from := int64(0); from < n; from += batch {
		batches = append(batches, changes(memory.DefaultAllocator, 1, from, from+batch, 1))
	}
	defer func() {
		for _, c := range batches {
			c.Record.Release()
		}
	}()
	var lines strings.Builder
	for _, l := range want(0, n, "insert") {
		lines.WriteString(l)
		lines.WriteByte('\n')
	}
	for i := 0; i < b.N; i++ {
		addr := cluster(b, 3, "sink", "kcat")
		cfg := fmt.Sprintf(`{"bootstrap.servers": %q, "topic": "sink", "compression.type": "none"}`, addr) // kcat does not compress either
		s, err := kafka.NewOutput(connectors.SinkParams{Pipeline: "p", Table: "users", Connector: "bench", Config: json.RawMessage(cfg), Schema: usersSchema, PrimaryKey: []string{"id"}})
		require.NoError(b, err)
		start := time.Now()
		_, err = s.Open(ctx)
		require.NoError(b, err)
		for _, c := range batches {
			require.NoError(b, s.Write(ctx, c))
		}
		require.NoError(b, s.Commit(ctx, 1))
		sink := time.Since(start)
		require.NoError(b, s.Close())

		cmd := exec.Command(kcat, "-P", "-b", addr, "-t", "kcat")
		cmd.Stdin = strings.NewReader(lines.String())
		start = time.Now()
		out, err := cmd.CombinedOutput()
		require.NoError(b, err, "kcat: %s", out)
		kc := time.Since(start)
		b.ReportMetric(sink.Seconds(), "sink-s")
		b.ReportMetric(kc.Seconds(), "kcat-s")
		b.ReportMetric(sink.Seconds()/kc.Seconds(), "ratio")
	}
}
