package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// flightMessages returns the first n flights of the shared
// flights-200k.json, one JSON object each: the Kafka messages of these tests.
func flightMessages(t testing.TB, n int) [][]byte {
	data, err := os.ReadFile(sharedData(t, "flights-200k.json"))
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

// kafkaCluster starts an in-process Kafka cluster (kfake) with the topic.
func kafkaCluster(t testing.TB, topic string, partitions int32) string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// produceFlights writes values to the topic, message i to partition
// i % partitions, in order; a transactional producer commits them in
// transactions of 1,000.
func produceFlights(t testing.TB, addr, topic string, partitions int32, values [][]byte, transactional bool) {
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1 << 20)}
	if transactional {
		opts = append(opts, kgo.TransactionalID("sluice-e2e"))
	}
	cl, err := kgo.NewClient(opts...)
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()
	for start := 0; start < len(values); start += 1000 {
		end := min(start+1000, len(values))
		if transactional {
			require.NoError(t, cl.BeginTransaction())
		}
		recs := make([]*kgo.Record, 0, end-start)
		for i := start; i < end; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: values[i]})
		}
		require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
		if transactional {
			require.NoError(t, cl.EndTransaction(ctx, kgo.TryCommit))
		}
	}
}

// flightsPipeline is a one-table pipeline of flights (delay, distance,
// time) with the given connectors in YAML.
func flightsPipeline(t *testing.T, name, connectorsYAML string) *pipeline.Pipeline {
	y := fmt.Sprintf(`name: %s
stop_at_end_of_input: true
tables:
  - name: flights
    columns:
      - {name: delay, type: INT}
      - {name: distance, type: INT}
      - {name: time, type: DOUBLE}
    connectors:
%s`, name, connectorsYAML)
	p, _, err := pipeline.Load([]byte(y), ".yaml", name)
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// flightKeys counts rows by value, to compare multisets of flights.
func flightKeys(t testing.TB, values [][]byte) map[string]int {
	out := map[string]int{}
	for _, v := range values {
		var m struct {
			Delay, Distance int64
			Time            float64
		}
		require.NoError(t, json.Unmarshal(v, &m))
		out[fmt.Sprint(m.Delay, "/", m.Distance, "/", m.Time)]++
	}
	return out
}

func storedKeys(rows []storedRow) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[fmt.Sprint(r.values[0], "/", r.values[1], "/", r.values[2])] += int(r.weight)
	}
	return out
}

// TestKafkaSwitchover is Feldera's tutorial scenario: history backfilled
// from a file holds the first 42 messages of the topic; the Kafka
// connector starts after it, at offset 42. The table must hold the backfill
// and messages 42 onward exactly once, and nothing from Kafka may be
// committed before the backfill has finished.
func TestKafkaSwitchover(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	addr := kafkaCluster(t, "flights", 1)
	msgs := flightMessages(t, 3000)
	produceFlights(t, addr, "flights", 1, msgs[:2000], false)

	history := filepath.Join(t.TempDir(), "history.json")
	require.NoError(t, os.WriteFile(history, append([]byte(strings.Join(bytesToStrings(msgs[:42]), "\n")), '\n'), 0o644))
	p := flightsPipeline(t, "switchover", fmt.Sprintf(`      - name: historical
        labels: [flights.historical]
        transport: {name: file_input, config: {path: %q}}
        format: {name: json}
      - name: live
        start_after: [flights.historical]
        transport:
          name: kafka_input
          config:
            bootstrap.servers: %q
            topic: flights
            seek: [{topic: flights, partition: 0, offset: 42}]
        format: {name: json}
`, history, addr))
	p.StopAtEndOfInput = false
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})

	eventually(t, time.Minute, "all 2000 records ingested", func() bool {
		return stats(t, c, "switchover").GlobalMetrics.TotalInputRecords == 2000
	})
	produceFlights(t, addr, "flights", 1, msgs[2000:], false) // live, after the switch
	eventually(t, time.Minute, "all 3000 records ingested", func() bool {
		return stats(t, c, "switchover").GlobalMetrics.TotalInputRecords == 3000
	})
	err := sluice.Command(context.Background(), c, "switchover", workflows.PipelineStop, nil)
	require.NoError(t, err)
	require.NoError(t, run.Get(context.Background(), nil))

	rows := readTable(t, dataDir, "switchover", "flights")
	require.Equal(t, flightKeys(t, msgs), storedKeys(rows), "the backfill plus messages 42 onward, each once")
	lastHistory, firstLive := switchOrder(rows, "historical")
	require.Less(t, lastHistory, firstLive, "nothing from Kafka before the backfill finished")
	live := connector(stats(t, c, "switchover"), "flights.live")
	require.JSONEq(t, `{"offsets": {"flights": {"0": 3000}}}`, string(live.Checkpoint))
	require.Equal(t, int64(2958), live.Metrics.TotalRecords)
}

func bytesToStrings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// TestKafkaEndOfInputReleasesStartAfter: a Kafka connector with
// enable.partition.eof over 3 partitions reaches end of input and releases
// the connector that starts after it, with plain and transactional
// producers.
func TestKafkaEndOfInputReleasesStartAfter(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	msgs := flightMessages(t, 30_000)
	for _, transactional := range []bool{false, true} {
		name := fmt.Sprintf("eof-txn-%v", transactional)
		t.Run(name, func(t *testing.T) {
			addr := kafkaCluster(t, "flights", 3)
			produceFlights(t, addr, "flights", 3, msgs, transactional)
			p := flightsPipeline(t, name, fmt.Sprintf(`      - name: history
        labels: [history]
        transport:
          name: kafka_input
          config: {bootstrap.servers: %q, topic: flights, start_from: earliest, enable.partition.eof: "true"}
        format: {name: json}
        max_batch_size: 2000
      - name: after
        start_after: history
        transport: {name: datagen, config: {seed: 1, plan: [{limit: 100}]}}
`, addr))
			run := startPipeline(t, c, workflows.Input{Pipeline: *p})
			final := finish(t, run)
			require.True(t, final.GlobalMetrics.PipelineComplete)
			require.Equal(t, int64(30_000), connector(final, "flights.history").Metrics.TotalRecords)
			require.True(t, connector(final, "flights.history").Metrics.EndOfInput)
			rows := readTable(t, dataDir, name, "flights")
			var history []storedRow
			lastHistory, firstAfter := int64(-1), int64(1<<62)
			for _, r := range rows {
				if r.conn == "history" {
					history = append(history, r)
					lastHistory = max(lastHistory, r.commit)
				} else {
					firstAfter = min(firstAfter, r.commit)
				}
			}
			require.Equal(t, flightKeys(t, msgs), storedKeys(history), "every message once")
			require.Len(t, rows, 30_100)
			require.Less(t, lastHistory, firstAfter, "the dependent starts after the last Kafka commit")
		})
	}
}

// TestKafkaLatestResolvedOnce: start_from latest is resolved when the
// connector is first activated and kept by the workflow. The connector is
// paused before it commits anything, messages are produced, the worker is
// replaced, and the connector resumed: none of those messages is skipped,
// and none produced before the first activation is read.
func TestKafkaLatestResolvedOnce(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir})
	require.NoError(t, w.Start())
	addr := kafkaCluster(t, "flights", 2)
	msgs := flightMessages(t, 600)
	produceFlights(t, addr, "flights", 2, msgs[:200], false) // before: never read

	p := flightsPipeline(t, "latest", fmt.Sprintf(`      - name: live
        transport: {name: kafka_input, config: {bootstrap.servers: %q, topic: flights}}
        format: {name: json}
`, addr))
	p.StopAtEndOfInput = false
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	var resolved string
	eventually(t, 30*time.Second, "the start resolved and kept by the workflow", func() bool {
		resolved = string(connector(stats(t, c, "latest"), "flights.live").Checkpoint)
		return resolved != "" && resolved != "null"
	})
	require.JSONEq(t, `{"offsets": {"flights": {"0": 100, "1": 100}}}`, resolved)
	err := sluice.Command(context.Background(), c, "latest", workflows.ConnectorPause, &workflows.ConnectorRef{Table: "flights", Connector: "live"})
	require.NoError(t, err)
	eventually(t, 30*time.Second, "the connector's activity returned", func() bool {
		return !activityRunning(t, c, run.GetID(), "flights.live")
	})

	produceFlights(t, addr, "flights", 2, msgs[200:400], false) // while paused
	w.Stop()
	startWorker(t, c, dataDir)
	err = sluice.Command(context.Background(), c, "latest", workflows.ConnectorStart, &workflows.ConnectorRef{Table: "flights", Connector: "live"})
	require.NoError(t, err)
	produceFlights(t, addr, "flights", 2, msgs[400:], false) // after the resume
	eventually(t, time.Minute, "400 records ingested", func() bool {
		return stats(t, c, "latest").GlobalMetrics.TotalInputRecords >= 400
	})
	err = sluice.Command(context.Background(), c, "latest", workflows.PipelineStop, nil)
	require.NoError(t, err)
	require.NoError(t, run.Get(context.Background(), nil))
	require.Equal(t, flightKeys(t, msgs[200:]), storedKeys(readTable(t, dataDir, "latest", "flights")))
}

// TestKafkaCrash kills a separate worker process with SIGKILL three times
// while it ingests 200,000 Kafka messages from 3 partitions; the table
// store ends with every message exactly once.
func TestKafkaCrash(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	workerBin := buildBinary(t, "worker", t.TempDir())
	addr := kafkaCluster(t, "flights", 3)
	msgs := flightMessages(t, 200_000)
	produceFlights(t, addr, "flights", 3, msgs, false)
	p := flightsPipeline(t, "kafkacrash", fmt.Sprintf(`      - name: history
        transport:
          name: kafka_input
          config: {bootstrap.servers: %q, topic: flights, start_from: earliest, enable.partition.eof: "true"}
        format: {name: json}
        max_batch_size: 2000
        max_queued_records: 4000
`, addr))

	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 2})
	final := crashRun(t, ts, run, workerBin, dataDir, "kafkacrash", "flights", []int{5, 20, 35}, 50)
	rows := readTable(t, dataDir, "kafkacrash", "flights")
	require.Len(t, rows, 200_000)
	require.Equal(t, flightKeys(t, msgs), storedKeys(rows), "every message exactly once")
	require.Equal(t, int64(200_000), connector(final, "flights.history").Metrics.TotalRecords)
}

// TestKafkaBadInput: malformed messages are counted and shown with their
// position while the others are ingested; an unreachable broker is a
// fatal_error, not a hang.
func TestKafkaBadInput(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	addr := kafkaCluster(t, "flights", 1)
	produceFlights(t, addr, "flights", 1, [][]byte{
		[]byte(`{"delay": 1, "distance": 100, "time": 1.5}`),
		[]byte(`{"delay": 2, "distance": 2`),
		[]byte(`{"delay": "late", "distance": 100, "time": 2}`),
		[]byte(`{"delay": 3, "distance": 300, "time": 3.5}`),
	}, false)
	p := flightsPipeline(t, "badinput", fmt.Sprintf(`      - name: messy
        transport: {name: kafka_input, config: {bootstrap.servers: %q, topic: flights, start_from: earliest, enable.partition.eof: true}}
        format: {name: json}
      - name: nobroker
        transport: {name: kafka_input, config: {bootstrap.servers: "127.0.0.1:1", topic: flights}}
        format: {name: json}
`, addr))
	p.StopAtEndOfInput = false
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	var s workflows.PipelineStats
	eventually(t, time.Minute, "messy finished and nobroker failed", func() bool {
		s = stats(t, c, "badinput")
		return connector(s, "flights.messy").Finished && connector(s, "flights.nobroker").FatalError != nil
	})
	messy := connector(s, "flights.messy")
	require.Equal(t, int64(2), messy.Metrics.TotalRecords)
	require.Equal(t, int64(2), messy.Metrics.NumParseErrors)
	require.Equal(t, "topic flights partition 0 offset 1", messy.ParseErrors[0].Position)
	require.Equal(t, "topic flights partition 0 offset 2", messy.ParseErrors[1].Position)
	nobroker := connector(s, "flights.nobroker")
	require.Contains(t, *nobroker.FatalError, "127.0.0.1:1 unreachable")
	require.Equal(t, "unhealthy", nobroker.Health)
	err := sluice.Command(context.Background(), c, "badinput", workflows.PipelineStop, nil)
	require.NoError(t, err)
	require.NoError(t, run.Get(context.Background(), nil))
}
