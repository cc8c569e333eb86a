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
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

// Activities carries the dependencies of Sluice's activities. Register it
// once per worker: w.RegisterActivity(&activities.Activities{...}).
type Activities struct {
	// Registry builds sources by transport name.
	Registry *connectors.Registry
	// DataDir is the table store's root, a directory or s3://bucket/prefix:
	// tables live at store.Location(DataDir, pipeline, table). Workers that
	// may run the same connector must share it.
	DataDir string
	// Store tunes the table store (checkpoints, compaction, S3 settings).
	Store store.Options
	// Allocator allocates record batches; memory.DefaultAllocator if nil.
	Allocator memory.Allocator
	// HeartbeatInterval is how often progress is heartbeated; default 1s.
	HeartbeatInterval time.Duration
}

// Error types of non-retryable failures, as temporal.ApplicationError types.
const (
	ErrTypeConfig = "ConfigError" // bad config, missing file, refused connection, wrong table
	ErrTypeFenced = "Fenced"      // a newer attempt committed for this connector: this one is stale
)

// OpenTable creates the table's Delta table in the worker's store if it
// does not exist, and returns its identity. The Pipeline workflow runs it
// (as a local activity) before a table's first connector starts and keeps
// the result, so that every Ingest can check it writes to that table.
func (a *Activities) OpenTable(ctx context.Context, in OpenTableInput) (TableRef, error) {
	schema, err := in.Table.Schema()
	if err != nil {
		return TableRef{}, fatal(err)
	}
	loc := store.Location(a.DataDir, in.Pipeline, in.Table.Name)
	t, err := store.Create(ctx, loc, in.Table.Name, schema, a.storeOptions())
	if err != nil {
		return TableRef{}, err
	}
	if err := t.CheckSchema(schema); err != nil {
		return TableRef{}, fatal(fmt.Errorf("table %s: %w", in.Table.Name, err))
	}
	return TableRef{ID: t.ID(), Location: loc}, nil
}

func (a *Activities) storeOptions() store.Options {
	o := a.Store
	if o.Allocator == nil {
		o.Allocator = a.Allocator
	}
	return o
}

// table opens the table an Ingest writes to: the one the workflow
// recorded (in.TableRef), refusing another location or another table id
// (a worker with another --data-dir, a deleted store); without a record
// (histories from before table identities), the table at this worker's
// location, created if needed.
func (a *Activities) table(ctx context.Context, in IngestInput, schema *arrow.Schema) (*store.Table, error) {
	t, err := a.openTable(ctx, in, schema)
	if err != nil {
		return nil, err
	}
	if err := t.CheckSchema(schema); err != nil {
		t.Close()
		return nil, fatal(fmt.Errorf("table %s: %w", in.Table.Name, err))
	}
	return t, nil
}

func (a *Activities) openTable(ctx context.Context, in IngestInput, schema *arrow.Schema) (*store.Table, error) {
	loc := store.Location(a.DataDir, in.Pipeline, in.Table.Name)
	ref := in.TableRef
	if ref.ID == "" {
		return store.Create(ctx, loc, in.Table.Name, schema, a.storeOptions())
	}
	if ref.Location != loc {
		return nil, fatal(fmt.Errorf("table %s is the Delta table %s (id %s), but this worker's data dir puts it at %s: start the worker with the pipeline's data dir", in.Table.Name, ref.Location, ref.ID, loc))
	}
	t, err := store.Open(ctx, loc, a.storeOptions())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fatal(fmt.Errorf("table %s: the Delta table %s (id %s) does not exist any more at %s", in.Table.Name, ref.Location, ref.ID, loc))
	}
	if err != nil {
		return nil, err
	}
	if t.ID() != ref.ID {
		return nil, fatal(fmt.Errorf("table %s: %s holds the Delta table id %s, but the pipeline's table is id %s (was the store deleted or replaced?)", in.Table.Name, loc, t.ID(), ref.ID))
	}
	return t, nil
}

type item struct {
	batch connectors.Batch
	err   error // terminal: ErrEndOfInput, context.Canceled, or a source error
}

// Ingest runs one input connector until it reaches end of input (the
// result then has Metrics.EndOfInput set), is canceled (pause: it stops
// reading, commits what it buffered and returns its progress), or fails.
//
// It writes to the Delta table the workflow recorded (in.TableRef) and
// refuses another location, another table id or other columns. It
// resumes from the newest of: the progress it is given, its last
// heartbeat, and the state the table holds for the connector, which
// always wins since heartbeats report only committed positions. Each
// commit is one table version (store.Table.Commit) at the connector's
// commit cadence. Config errors, missing files, refused connections and
// a wrong table are non-retryable ApplicationErrors of type
// [ErrTypeConfig]; an attempt that finds a newer attempt's commit is
// stale and stops with [ErrTypeFenced] (Temporal has already discarded
// it); other errors, including an older attempt's commit after this one
// resumed, are retried by Temporal from the table's state.
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
	table, err := a.table(ctx, in, schema)
	if err != nil {
		return Progress{}, err
	}
	defer table.Close()
	progress, err := resume(ctx, in, table)
	if err != nil {
		return Progress{}, err
	}
	src, err := a.source(in, schema, alloc)
	if err != nil {
		return progress, err
	}
	defer src.Close()
	if err := open(ctx, src, progress.Checkpoint, endpoint); err != nil {
		if errors.Is(err, connectors.ErrFatal) {
			return progress, fatal(fmt.Errorf("%s: %w", endpoint, err))
		}
		return progress, fmt.Errorf("%s: open: %w", endpoint, err)
	}
	progress.Metrics.EndOfInput = false
	progress.Metrics.BufferedRecords = 0

	w := &writer{
		Activities: a, ctx: ctx, table: table, tableName: in.Table.Name, connector: in.Connector.Name, schema: change, progress: progress,
		epoch: activity.GetInfo(ctx).StartedTime.UnixNano(), queueLimit: int64(in.Connector.QueueLimit()),
	}
	w.commitRows, w.commitWait = commitCadence(in.Connector, src)
	queue := make(chan item, max(2, in.Connector.QueueLimit()/max(1, in.Connector.BatchLimit())))
	space := make(chan struct{}, 1) // the writer freed queue space
	readCtx, stopReading := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		w.read(readCtx, src, queue, space)
	}()
	// Before the source closes (deferred above, so after this), the reader
	// must have returned: stop it and release what it still queues.
	defer func() {
		stopReading()
		for {
			select {
			case <-readerDone:
				return
			case it := <-queue:
				if it.batch.Record != nil {
					it.batch.Record.Release()
				}
			}
		}
	}()
	return w.run(queue, space)
}

// open opens the source, a panic in it being a fatal error.
func open(ctx context.Context, src connectors.Source, cp connectors.Checkpoint, endpoint string) (err error) {
	defer connectors.Recover(&err, endpoint+" open")
	return src.Open(ctx, cp)
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

// resume picks the newest progress of the input, the heartbeat and the
// table; the table's is authoritative, since only it is committed.
func resume(ctx context.Context, in IngestInput, table *store.Table) (Progress, error) {
	p := in.Progress
	if activity.HasHeartbeatDetails(ctx) {
		var hb Progress
		if err := activity.GetHeartbeatDetails(ctx, &hb); err == nil && hb.Commit >= p.Commit {
			p = hb
		}
	}
	st, err := table.Connector(ctx, in.Table.Name, in.Connector.Name)
	if err != nil {
		return p, err
	}
	if st.Commit > 0 && st.Commit >= p.Commit {
		var stored Progress
		if err := json.Unmarshal(st.Progress, &stored); err != nil {
			return p, fatal(fmt.Errorf("table %s: connector %s's state: %w", table, in.Connector.Name, err))
		}
		stored.Commit = st.Commit
		p = stored
	}
	return p, nil
}

// commitCadence is when the writer commits: once commitRows records wait,
// or commitWait after the previous commit. A live connector commits at
// most once per commit_interval_ms unless max_batch_size records wait; a
// backfill (a source that reaches end of input) commits by size, half its
// queue (max_queued_records), or once per interval when it reads slower.
func commitCadence(c pipeline.Connector, src connectors.Source) (int64, time.Duration) {
	rows := int64(c.BatchLimit())
	if b, ok := src.(interface{ Bounded() bool }); ok && b.Bounded() {
		rows = max(rows, int64(c.QueueLimit()/2))
	}
	return rows, c.CommitInterval()
}

func fatal(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeConfig, err)
}

type writer struct {
	*Activities
	ctx        context.Context // the activity's: canceled on pause
	table      *store.Table
	tableName  string
	connector  string
	schema     *arrow.Schema
	progress   Progress
	epoch      int64        // this attempt's, for fencing (store.State)
	queued     atomic.Int64 // records in the queue
	queueLimit int64
	commitRows int64         // commit once this many records wait
	commitWait time.Duration // or this long after the previous commit
	lastBeat   time.Time
}

// read moves batches from the source to the queue until end of input, an
// error, or ctx ends, and always ends with one terminal item.
func (w *writer) read(ctx context.Context, src connectors.Source, queue chan<- item, space <-chan struct{}) {
	// A bug in the source or its parser fails the connector, not the
	// worker: Recover (deferred last, so run first) turns a panic into
	// panicked, which ends the stream.
	var panicked error
	defer func() {
		var p *connectors.PanicError
		if errors.As(panicked, &p) {
			activity.GetLogger(w.ctx).Error("connector panicked", "connector", w.connector, "panic", fmt.Sprint(p.Value), "stack", p.Stack)
			queue <- item{err: panicked}
		}
	}()
	defer connectors.Recover(&panicked, w.connector)
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
	lastCommit := time.Now()
	var terminal error
	for terminal == nil {
		var deadline <-chan time.Time
		if len(pending) > 0 {
			deadline = time.After(time.Until(lastCommit.Add(w.commitWait)))
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
					deadline = time.After(time.Until(lastCommit.Add(w.commitWait)))
				}
				if rows >= w.commitRows {
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
			lastCommit = time.Now()
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

// commit writes pending as one table version with the checkpoint of its
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
	_, err := w.table.Commit(context.WithoutCancel(w.ctx), store.Commit{
		Table: w.tableName, Connector: w.connector, Number: next.Commit, Epoch: w.epoch,
		Progress: stored, Records: recs, Schema: w.schema,
	})
	if errors.Is(err, store.ErrFenced) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeFenced, err)
	}
	if err != nil {
		return err // ErrSuperseded too: the retry resumes from the table
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
