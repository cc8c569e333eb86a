package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

const kafkaPartitions = 3

// kafkaMessages turns the first n flights of the Parquet file into
// newline JSON messages of about 100 bytes:
// {"date":"2006-01-01 00:25:00","delay":-5,"distance":406,"origin":"...","destination":"..."}.
func kafkaMessages(data string, n int) ([][]byte, error) {
	f, err := file.OpenParquetFile(data, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return nil, err
	}
	defer rr.Release()
	out := make([][]byte, 0, n)
	for rr.Next() && len(out) < n {
		rec := rr.RecordBatch()
		date := rec.Column(0)
		for i := 0; i < int(rec.NumRows()) && len(out) < n; i++ {
			ts := date.(*array.Timestamp).Value(i).ToTime(date.DataType().(*arrow.TimestampType).Unit)
			m, _ := json.Marshal(map[string]any{
				"date": ts.Format("2006-01-02 15:04:05"), "delay": rec.Column(1).GetOneForMarshal(i), "distance": rec.Column(2).GetOneForMarshal(i),
				"origin": rec.Column(3).GetOneForMarshal(i), "destination": rec.Column(4).GetOneForMarshal(i),
			})
			out = append(out, m)
		}
	}
	return out, nil
}

// kafkaTopic starts kfake and produces msgs to a fresh topic.
func kafkaTopic(msgs [][]byte) (*kfake.Cluster, string, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, "flights"))
	if err != nil {
		return nil, "", err
	}
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		return nil, "", err
	}
	defer cl.Close()
	for start := 0; start < len(msgs); start += 10_000 {
		var recs []*kgo.Record
		for _, m := range msgs[start:min(start+10_000, len(msgs))] {
			recs = append(recs, &kgo.Record{Topic: "flights", Value: m})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			return nil, "", err
		}
	}
	return c, addr, nil
}

var flightsTable = pipeline.Table{Name: "flights", Columns: []pipeline.Column{
	{Name: "date", Type: "TIMESTAMP"}, {Name: "delay", Type: "BIGINT"}, {Name: "distance", Type: "BIGINT"},
	{Name: "origin", Type: "VARCHAR"}, {Name: "destination", Type: "VARCHAR"},
}}

// kafkaBaseline is a plain franz-go consume loop, arrow-go's JSON reader
// on each poll's messages, and the same Parquet write (one file per poll
// of up to 10,000 messages, synced, like a commit).
func kafkaBaseline(addr string, n int, dir string) (time.Duration, error) {
	schema, err := flightsTable.Schema()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		"flights": {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	change := pipeline.WithWeight(schema)
	var buf bytes.Buffer
	for got, seq := 0, 0; got < n; seq++ {
		fs := cl.PollRecords(context.Background(), pipeline.DefaultMaxBatchSize)
		if err := fs.Err0(); err != nil {
			return 0, err
		}
		buf.Reset()
		fs.EachRecord(func(r *kgo.Record) {
			buf.Write(r.Value)
			buf.WriteByte('\n')
			got++
		})
		jr := array.NewJSONReader(bytes.NewReader(buf.Bytes()), schema, array.WithChunk(-1))
		if !jr.Next() {
			jr.Release()
			continue
		}
		rec := jr.RecordBatch()
		cols := append(append([]arrow.Array{}, rec.Columns()...), format.Ones(memory.DefaultAllocator, int(rec.NumRows())))
		withWeight := array.NewRecordBatch(change, cols, rec.NumRows())
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("%06d.parquet", seq)))
		if err != nil {
			return 0, err
		}
		w, err := pqarrow.NewFileWriter(change, keepOpen{out}, delta.WriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		if err != nil {
			return 0, err
		}
		err = w.Write(withWeight)
		cols[len(cols)-1].Release()
		withWeight.Release()
		if jr.Err() != nil && jr.Err() != io.EOF {
			return 0, jr.Err()
		}
		jr.Release()
		if err == nil {
			err = w.Close()
		}
		if err == nil {
			err = out.Sync()
		}
		out.Close()
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// rpcCounter counts the calls a Temporal client makes, by method.
type rpcCounter struct{ heartbeats, total atomic.Int64 }

func (r *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r.total.Add(1)
	if filepath.Base(method) == "RecordActivityTaskHeartbeat" {
		r.heartbeats.Add(1)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

type kafkaResult struct {
	records           int
	plain, sluiceTime time.Duration
	events, heartbeat int64
}

// benchKafka measures n messages: the plain loop, then Sluice with a
// worker whose client counts heartbeat RPCs, and the pipeline's history
// events (Temporal actions are about events that start or end something
// plus heartbeats).
func benchKafka(ctx context.Context, hostPort, namespace, data, tmp string, n int) (kafkaResult, error) {
	res := kafkaResult{records: n}
	msgs, err := kafkaMessages(data, n)
	if err != nil {
		return res, err
	}
	kc, addr, err := kafkaTopic(msgs)
	if err != nil {
		return res, err
	}
	defer kc.Close()
	dir, _ := os.MkdirTemp(tmp, "kafka-plain-")
	if res.plain, err = kafkaBaseline(addr, n, dir); err != nil {
		return res, err
	}

	var counter rpcCounter
	c, err := client.Dial(client.Options{HostPort: hostPort, Namespace: namespace,
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(counter.intercept)}}})
	if err != nil {
		return res, err
	}
	defer c.Close()
	dataDir, _ := os.MkdirTemp(tmp, "kafka-tables-")
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir, TaskQueue: "kafka-bench"})
	if err := w.Start(); err != nil {
		return res, err
	}
	defer w.Stop()
	table := flightsTable
	table.Connectors = []pipeline.Connector{{Name: "kafka", Format: &pipeline.Format{Name: "json"},
		Transport: pipeline.Transport{Name: "kafka_input", Config: []byte(fmt.Sprintf(
			`{"bootstrap.servers": %q, "topic": "flights", "start_from": "earliest", "enable.partition.eof": true}`, addr))}}}
	p := &pipeline.Pipeline{Name: fmt.Sprintf("kafka%d", n), StopAtEndOfInput: true, Tables: []pipeline.Table{table}}
	if err := pipeline.Validate(p, builtin.Registry()); err != nil {
		return res, err
	}
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: pipeline.WorkflowID(p.Name), TaskQueue: "kafka-bench"},
		workflows.WorkflowName, workflows.Input{Pipeline: *p})
	if err != nil {
		return res, err
	}
	var final workflows.PipelineStats
	if err := run.Get(ctx, &final); err != nil {
		return res, err
	}
	res.sluiceTime = time.Since(start)
	if got := final.GlobalMetrics.TotalInputRecords; got != int64(n) {
		return res, fmt.Errorf("sluice ingested %d kafka records, want %d", got, n)
	}
	res.heartbeat = counter.heartbeats.Load()
	it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, 0)
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return res, err
		}
		res.events++
	}
	return res, nil
}

func (r kafkaResult) print() {
	secs := r.sluiceTime.Seconds()
	actions := float64(r.events + r.heartbeat)
	fmt.Printf("kafka (kfake, %d partitions) newline JSON, %d records of ~100 bytes\n", kafkaPartitions, r.records)
	fmt.Printf("  plain franz-go + arrow-go JSON + Parquet: %6.2fs  %10.0f rec/s\n", r.plain.Seconds(), float64(r.records)/r.plain.Seconds())
	fmt.Printf("  sluice (workflow+activity):               %6.2fs  %10.0f rec/s\n", secs, float64(r.records)/secs)
	fmt.Printf("  throughput ratio (sluice/plain): %.2f   (target >= 0.8)\n", r.plain.Seconds()/secs)
	fmt.Printf("  temporal: %d history events + %d heartbeats = %.0f actions: %.1f per second running, %.0f per million records\n",
		r.events, r.heartbeat, actions, actions/secs, actions/float64(r.records)*1e6)
}
