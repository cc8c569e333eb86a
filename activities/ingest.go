package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/tablestore"
	"github.com/sluicehq/sluice/pipeline"
)

// Activities carries the dependencies of Sluice's activities. Register it
// once per worker: w.RegisterActivity(&activities.Activities{...}).
type Activities struct {
	// Registry builds sources by transport name.
	Registry *connectors.Registry
	// DataDir is the table store's root: tables live in
	// DataDir/<pipeline>/<table>. Workers that may run the same connector
	// must share it.
	DataDir string
	// Allocator allocates record batches; memory.DefaultAllocator if nil.
	Allocator memory.Allocator
	// HeartbeatInterval is how often progress is heartbeated; default 1s.
	HeartbeatInterval time.Duration
	// Linger is how long the writer waits for more batches before a commit
	// smaller than the connector's max_batch_size; default 50ms.
	Linger time.Duration
}

// Error types of non-retryable failures, as temporal.ApplicationError types.
const (
	ErrTypeConfig = "ConfigError" // bad config, missing file, refused connection
	ErrTypeFenced = "Fenced"      // another attempt committed for this connector
)

type item struct {
	batch connectors.Batch
	err   error // terminal: ErrEndOfInput, context.Canceled, or a source error
}

// Ingest runs one input connector until it reaches end of input (the
// result then has Metrics.EndOfInput set), is canceled (pause: it stops
// reading, commits what it buffered and returns its progress), or fails.
//
// It resumes from the newest of: the progress it is given, its last
// heartbeat, and the connector's newest table store commit, which always
// wins since heartbeats report only committed positions. Config errors,
// missing files and refused connections are non-retryable
// ApplicationErrors of type [ErrTypeConfig]; other errors are retried by
// Temporal from the last commit.
func (a *Activities) Ingest(ctx context.Context, in IngestInput) (Progress, error) {
	alloc := a.Allocator
	if alloc == nil {
		alloc = memory.DefaultAllocator
	}
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	schema, err := in.Table.Schema()
	if err != nil {
		return Progress{}, fatal(err)
	}
	change := pipeline.WithWeight(schema)
	table, err := tablestore.Open(a.DataDir, in.Pipeline, in.Table.Name, alloc)
	if err != nil {
		return Progress{}, err
	}
	progress, err := resume(ctx, in, table)
	if err != nil {
		return Progress{}, err
	}
	src, err := a.source(in, schema, alloc)
	if err != nil {
		return progress, err
	}
	defer src.Close()
	if err := src.Open(ctx, progress.Checkpoint); err != nil {
		if errors.Is(err, connectors.ErrFatal) {
			return progress, fatal(fmt.Errorf("%s: %w", endpoint, err))
		}
		return progress, fmt.Errorf("%s: open: %w", endpoint, err)
	}
	progress.Metrics.EndOfInput = false
	progress.Metrics.BufferedRecords = 0

	w := &writer{
		Activities: a, ctx: ctx, table: table, connector: in.Connector.Name, schema: change, progress: progress,
		queueLimit: int64(in.Connector.QueueLimit()), batchLimit: int64(in.Connector.BatchLimit()),
	}
	queue := make(chan item, max(2, in.Connector.QueueLimit()/max(1, in.Connector.BatchLimit())))
	space := make(chan struct{}, 1) // the writer freed queue space
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go w.read(readCtx, src, queue, space)
	return w.run(queue, space)
}

// source builds the connector's source, its ${env:NAME} references
// resolved.
func (a *Activities) source(in IngestInput, schema *arrow.Schema, alloc memory.Allocator) (connectors.Source, error) {
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	cfg := in.Connector.Transport.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	cfg, err := connectors.ResolveEnv(cfg)
	if err != nil {
		return nil, fatal(fmt.Errorf("%s: %w", endpoint, err))
	}
	src, err := a.Registry.New(in.Connector.Transport.Name, connectors.Params{
		Endpoint:  endpoint,
		Config:    cfg,
		Format:    in.Connector.Format,
		Schema:    schema,
		BatchSize: in.Connector.BatchLimit(),
		Allocator: alloc,
	})
	if err != nil {
		return nil, fatal(fmt.Errorf("%s: %w", endpoint, err))
	}
	return src, nil
}

// Resolve returns the concrete checkpoint a connector starts from when it
// has none, for sources that implement connectors.Resolver (kafka_input's
// "latest"), or nil for the others. The Pipeline workflow runs it once,
// at a connector's first activation, and keeps the result. Errors are
// Ingest's.
func (a *Activities) Resolve(ctx context.Context, in IngestInput) (json.RawMessage, error) {
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	schema, err := in.Table.Schema()
	if err != nil {
		return nil, fatal(err)
	}
	src, err := a.source(in, schema, a.Allocator)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	r, ok := src.(connectors.Resolver)
	if !ok {
		return nil, nil
	}
	cp, err := r.Resolve(ctx)
	if errors.Is(err, connectors.ErrFatal) {
		return nil, fatal(fmt.Errorf("%s: %w", endpoint, err))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: resolve start: %w", endpoint, err)
	}
	return cp, nil
}

// resume picks the newest progress of the input, the heartbeat and the store.
func resume(ctx context.Context, in IngestInput, table *tablestore.Table) (Progress, error) {
	p := in.Progress
	if activity.HasHeartbeatDetails(ctx) {
		var hb Progress
		if err := activity.GetHeartbeatDetails(ctx, &hb); err == nil && hb.Commit >= p.Commit {
			p = hb
		}
	}
	last, err := table.Last(in.Connector.Name)
	if err != nil {
		return p, err
	}
	if last != nil && last.Number >= p.Commit {
		var stored Progress
		if err := json.Unmarshal(last.Progress, &stored); err != nil {
			return p, fatal(fmt.Errorf("table store commit %s: bad progress: %w", last.Path, err))
		}
		stored.Checkpoint, stored.Commit = last.Checkpoint, last.Number
		p = stored
	}
	return p, nil
}

func fatal(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeConfig, err)
}

type writer struct {
	*Activities
	ctx        context.Context // the activity's: canceled on pause
	table      *tablestore.Table
	connector  string
	schema     *arrow.Schema
	progress   Progress
	queued     atomic.Int64 // records in the queue
	queueLimit int64
	batchLimit int64
	lastBeat   time.Time
}

// read moves batches from the source to the queue until end of input, an
// error, or ctx ends, and always ends with one terminal item.
func (w *writer) read(ctx context.Context, src connectors.Source, queue chan<- item, space <-chan struct{}) {
	for {
		for w.queued.Load() >= w.queueLimit {
			select {
			case <-ctx.Done():
				queue <- item{err: context.Canceled}
				return
			case <-space:
			}
		}
		b, err := src.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = context.Canceled
			}
			queue <- item{err: err}
			return
		}
		w.queued.Add(b.Rows())
		queue <- item{batch: b}
	}
}

// run commits queued batches until the reader's terminal item.
func (w *writer) run(queue <-chan item, space chan<- struct{}) (Progress, error) {
	linger := w.Linger
	if linger == 0 {
		linger = 50 * time.Millisecond
	}
	interval := w.HeartbeatInterval
	if interval == 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var pending []connectors.Batch
	var rows int64
	release := func() {
		for _, b := range pending {
			if b.Record != nil {
				b.Record.Release()
			}
		}
		pending, rows = pending[:0], 0
	}
	defer release()
	var terminal error
	for terminal == nil {
		var deadline <-chan time.Time
		if len(pending) > 0 {
			deadline = time.After(linger)
		}
		gather := true
		for gather && terminal == nil {
			select {
			case it := <-queue:
				if it.err != nil {
					terminal = it.err
					break
				}
				pending = append(pending, it.batch)
				rows += it.batch.Rows()
				if deadline == nil {
					deadline = time.After(linger)
				}
				if rows >= w.batchLimit && len(queue) == 0 {
					gather = false
				}
			case <-deadline:
				gather = false
			case <-tick.C:
				w.heartbeat()
			}
		}
		if len(pending) > 0 {
			if err := w.commit(pending, rows); err != nil {
				return w.progress, err
			}
			release()
			select {
			case space <- struct{}{}:
			default:
			}
			w.heartbeat()
		}
	}
	switch {
	case errors.Is(terminal, connectors.ErrEndOfInput):
		w.progress.Metrics.EndOfInput = true
		w.progress.Metrics.BufferedRecords = 0
		activity.RecordHeartbeat(w.ctx, w.progress)
		return w.progress, nil
	case errors.Is(terminal, context.Canceled):
		// Paused: everything read is committed; report where we stopped.
		w.progress.Metrics.BufferedRecords = 0
		return w.progress, nil
	case errors.Is(terminal, connectors.ErrFatal):
		return w.progress, fatal(fmt.Errorf("%s: %w", w.connector, terminal))
	}
	w.progress.Metrics.NumTransportErrors++
	return w.progress, fmt.Errorf("%s: read: %w", w.connector, terminal)
}

// commit writes pending as one table store file with the checkpoint of its
// last batch. It uses a context that a pause does not cancel, so a pause
// still commits what was read.
func (w *writer) commit(pending []connectors.Batch, rows int64) error {
	next := w.progress
	next.Commit++
	var recs []arrow.RecordBatch
	for _, b := range pending {
		if b.Record != nil {
			recs = append(recs, b.Record)
		}
		next.Metrics.TotalBytes += b.Bytes
		next.Metrics.NumParseErrors += int64(len(b.Errors))
		next.ParseErrors = append(next.ParseErrors, b.Errors...)
		next.Checkpoint = b.Checkpoint
	}
	if n := len(next.ParseErrors); n > MaxParseErrors {
		next.ParseErrors = append([]connectors.ParseError(nil), next.ParseErrors[n-MaxParseErrors:]...)
	}
	next.Metrics.TotalRecords += rows
	next.Metrics.BufferedRecords = 0
	stored, _ := json.Marshal(next)
	_, err := w.table.Commit(context.WithoutCancel(w.ctx), w.connector, next.Commit, w.schema, recs, next.Checkpoint, stored)
	if errors.Is(err, tablestore.ErrFenced) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeFenced, err)
	}
	if err != nil {
		return err
	}
	w.queued.Add(-rows)
	w.progress = next
	return nil
}

// heartbeat reports committed progress and the records read but not yet
// committed, at most about once per HeartbeatInterval.
func (w *writer) heartbeat() {
	interval := w.HeartbeatInterval
	if interval == 0 {
		interval = time.Second
	}
	if time.Since(w.lastBeat) < interval/2 {
		return
	}
	w.lastBeat = time.Now()
	p := w.progress
	p.Metrics.BufferedRecords = w.queued.Load()
	activity.RecordHeartbeat(w.ctx, p)
}
