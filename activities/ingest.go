package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
	// Env resolves connectors' ${env:NAME} references against the
	// worker's allow-list (worker --allow-env; default SLUICE_*).
	Env connectors.Env
	// Observer, if set, sees each connector's progress at every
	// heartbeat and when its activity returns (see [Observer]).
	Observer Observer
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
	if err := checkNames(in.Pipeline, in.Table.Name, ""); err != nil {
		return TableRef{}, err
	}
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

// checkNames refuses names that would escape the table store's
// directory (pipeline.CheckName); connector "" is not checked.
func checkNames(pipelineName, table, connector string) error {
	var errs []error
	if err := pipeline.CheckName(pipelineName); err != nil {
		errs = append(errs, fmt.Errorf("pipeline name: %w", err))
	}
	if err := pipeline.CheckName(table); err != nil {
		errs = append(errs, fmt.Errorf("table name: %w", err))
	}
	if connector != "" {
		if err := pipeline.CheckName(connector); err != nil {
			errs = append(errs, fmt.Errorf("connector name: %w", err))
		}
	}
	if len(errs) > 0 {
		return fatal(errors.Join(errs...))
	}
	return nil
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
	var secrets connectors.Secrets
	p, err := a.ingest(ctx, in, &secrets)
	a.observeResult(in, p, false)
	return p, redact(secrets, err)
}

// redact removes the connector's resolved secrets from err, which may be
// a temporal.ApplicationError made by fatal.
func redact(secrets connectors.Secrets, err error) error {
	var app *temporal.ApplicationError
	if err == nil || len(secrets) == 0 {
		return err
	}
	if errors.As(err, &app) {
		msg := secrets.Redact(app.Message())
		if msg == app.Message() {
			return err
		}
		return temporal.NewApplicationErrorWithOptions(msg, app.Type(), temporal.ApplicationErrorOptions{NonRetryable: app.NonRetryable()})
	}
	return secrets.RedactError(err)
}

func (a *Activities) ingest(ctx context.Context, in IngestInput, secrets *connectors.Secrets) (Progress, error) {
	if err := checkNames(in.Pipeline, in.Table.Name, in.Connector.Name); err != nil {
		return in.Progress, err
	}
	// Heartbeat from the first instant to the last, so that a slow open
	// (an S3 listing, a Delta log replay, a slow GET) or a slow commit
	// never looks like a dead worker to Temporal.
	hb := startHeartbeat(ctx, a.heartbeatInterval(), in.Progress, a.observer(in))
	defer hb.stop()
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
	hb.set(progress)
	src, err := a.source(in, schema, alloc, secrets)
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
		Activities: a, ctx: ctx, table: table, tableName: in.Table.Name, connector: in.writer(), schema: change, progress: progress,
		epoch:   activity.GetInfo(ctx).StartedTime.UnixNano(),
		secrets: *secrets, hb: hb,
	}
	w.commitRows, w.commitWait = commitCadence(in.Connector, src)
	w.committer, _ = src.(connectors.Committer)
	p := startPump(ctx, int64(in.Connector.QueueLimit()), in.Connector.QueueLimit()/max(1, in.Connector.BatchLimit()),
		func(b connectors.Batch) {
			if b.Record != nil {
				b.Record.Release()
			}
		},
		func(ctx context.Context, emit func(connectors.Batch, int64) bool) error {
			return w.read(ctx, src, emit)
		})
	hb.track(&p.queued)
	// Before the source closes (deferred above, so after this), the reader
	// must have returned.
	defer p.close()
	return w.run(p)
}

// open opens the source, a panic in it being a fatal error.
func open(ctx context.Context, src connectors.Source, cp connectors.Checkpoint, endpoint string) (err error) {
	defer connectors.Recover(&err, endpoint+" open")
	return src.Open(ctx, cp)
}

// source builds the connector's source, its ${env:NAME} references
// resolved into *secrets.
func (a *Activities) source(in IngestInput, schema *arrow.Schema, alloc memory.Allocator, secrets *connectors.Secrets) (connectors.Source, error) {
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	cfg := in.Connector.Transport.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	cfg, s, err := a.Env.Resolve(cfg)
	if err != nil {
		return nil, fatal(fmt.Errorf("%s: transport.config: %w", endpoint, err))
	}
	*secrets = s
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
	var secrets connectors.Secrets
	cp, err := a.resolve(ctx, in, &secrets)
	return cp, redact(secrets, err)
}

func (a *Activities) resolve(ctx context.Context, in IngestInput, secrets *connectors.Secrets) (json.RawMessage, error) {
	if err := checkNames(in.Pipeline, in.Table.Name, in.Connector.Name); err != nil {
		return nil, err
	}
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	schema, err := in.Table.Schema()
	if err != nil {
		return nil, fatal(err)
	}
	src, err := a.source(in, schema, a.Allocator, secrets)
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
	st, err := table.Connector(ctx, in.Table.Name, in.writer())
	if err != nil {
		return p, err
	}
	if st.Commit > 0 && st.Commit >= p.Commit {
		var stored Progress
		if err := json.Unmarshal(st.Progress, &stored); err != nil {
			return p, fatal(fmt.Errorf("table %s: connector %s's state: %w", table, in.writer(), err))
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

// fatal is a non-retryable failure of type ErrTypeConfig with err's
// message once: no cause, whose message would repeat it in every view.
func fatal(err error) error {
	return temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeConfig, temporal.ApplicationErrorOptions{NonRetryable: true})
}

type writer struct {
	*Activities
	ctx        context.Context // the activity's: canceled on pause
	table      *store.Table
	tableName  string
	connector  string
	schema     *arrow.Schema
	progress   Progress
	epoch      int64         // this attempt's, for fencing (store.State)
	commitRows int64         // commit once this many records wait
	commitWait time.Duration // or this long after the previous commit
	hb         *heartbeat
	secrets    connectors.Secrets   // what the config's ${env:NAME} resolved to
	committer  connectors.Committer // the source, if it acts on commits (pub_sub_input acknowledges)
}

// read moves batches from the source to the pump until end of input, an
// error, or ctx ends, and returns the terminal error.
func (w *writer) read(ctx context.Context, src connectors.Source, emit func(connectors.Batch, int64) bool) (err error) {
	// A bug in the source or its parser fails the connector, not the
	// worker: Recover (deferred last, so run first) turns a panic into
	// the terminal error.
	defer func() {
		var p *connectors.PanicError
		if errors.As(err, &p) {
			activity.GetLogger(w.ctx).Error("connector panicked", "connector", w.connector, "panic", w.secrets.Redact(fmt.Sprint(p.Value)), "stack", w.secrets.Redact(p.Stack))
		}
	}()
	defer connectors.Recover(&err, w.connector)
	for {
		b, err := src.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Canceled
			}
			return err
		}
		if !emit(b, b.Rows()) {
			if b.Record != nil {
				b.Record.Release()
			}
			return context.Canceled
		}
	}
}

// run commits the pump's batches at the connector's commit cadence until
// the reader's terminal error.
func (w *writer) run(p *pump[connectors.Batch]) (Progress, error) {
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
		for gather := true; gather && terminal == nil; {
			e, ok := p.next(deadline)
			switch {
			case !ok:
				gather = false
			case e.err != nil:
				terminal = e.err
			default:
				pending = append(pending, e.v)
				rows += e.rows
				if deadline == nil {
					deadline = time.After(time.Until(lastCommit.Add(w.commitWait)))
				}
				gather = rows < w.commitRows
			}
		}
		if len(pending) > 0 {
			if err := w.commit(pending, rows); err != nil {
				return w.progress, err
			}
			lastCommit = time.Now()
			p.freed(rows)
			release()
		}
	}
	switch {
	case errors.Is(terminal, connectors.ErrEndOfInput):
		w.progress.Metrics.EndOfInput = true
		w.progress.Metrics.BufferedRecords = 0
		w.hb.set(w.progress)
		w.hb.report(w.progress)
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
		w.secrets.RedactParseErrors(b.Errors)
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
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeFenced, temporal.ApplicationErrorOptions{NonRetryable: true})
	}
	if err != nil {
		return err // ErrSuperseded too: the retry resumes from the table
	}
	w.progress = next
	w.hb.set(next)
	if w.committer != nil {
		// A pause must not cancel it: the source acknowledges what was
		// just committed. A failure is the source's to cope with (a
		// redelivery it recognises), not the connector's.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
		defer cancel()
		err := func() (err error) {
			defer connectors.Recover(&err, w.connector+" commit hook")
			return w.committer.Committed(ctx, next.Checkpoint)
		}()
		if err != nil {
			activity.GetLogger(w.ctx).Warn("source's commit hook failed", "connector", w.connector, "error", w.secrets.Redact(err.Error()))
		}
	}
	return nil
}

func (a *Activities) heartbeatInterval() time.Duration {
	if a.HeartbeatInterval > 0 {
		return a.HeartbeatInterval
	}
	return time.Second
}

// heartbeat sends the connector's committed progress, with the records
// read but not yet committed, once per interval from its own goroutine,
// for the whole life of the activity: while the source opens, while a
// commit runs, while the reader waits. A stale attempt's heartbeat is
// refused by the server, which cancels its context: a zombie stops.
type heartbeat struct {
	ctx      context.Context
	mu       sync.Mutex
	progress Progress
	buffered *atomic.Int64  // the writer's queued records, once it exists
	observe  func(Progress) // Activities.Observer's, for this connector; nil without one
	done     chan struct{}
	stopped  chan struct{}
}

// startHeartbeat heartbeats p, then what set gives it, and passes each
// heartbeat to observe (nil: none).
func startHeartbeat(ctx context.Context, interval time.Duration, p Progress, observe func(Progress)) *heartbeat {
	h := &heartbeat{ctx: ctx, observe: observe, done: make(chan struct{}), stopped: make(chan struct{})}
	h.set(p) // its own copy of the output metrics
	go func() {
		defer close(h.stopped)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-tick.C:
				p := h.current()
				h.report(p)
				activity.RecordHeartbeat(ctx, p)
			}
		}
	}()
	return h
}

// track makes heartbeats report queued as the buffered records.
func (h *heartbeat) track(queued *atomic.Int64) {
	h.mu.Lock()
	h.buffered = queued
	h.mu.Unlock()
}

// set records the newest committed progress. It keeps its own copy of
// the output metrics, which the caller goes on changing.
func (h *heartbeat) set(p Progress) {
	if p.Output != nil {
		o := *p.Output
		p.Output = &o
	}
	h.mu.Lock()
	h.progress = p
	h.mu.Unlock()
}

func (h *heartbeat) current() Progress {
	h.mu.Lock()
	p := h.progress
	buffered := h.buffered
	h.mu.Unlock()
	if buffered != nil {
		p.Metrics.BufferedRecords = buffered.Load()
	}
	return p
}

func (h *heartbeat) stop() {
	close(h.done)
	<-h.stopped
}

// report passes p, about to be heartbeated, to the observer: before
// the heartbeat, which may wait for the server, so that the observer is
// never behind what the server has.
func (h *heartbeat) report(p Progress) {
	if h.observe != nil {
		h.observe(p)
	}
}

// observer returns the function that passes the connector's progress to
// a.Observer, or nil without one.
func (a *Activities) observer(in IngestInput) func(Progress) {
	if a.Observer == nil {
		return nil
	}
	o := a.Observer
	return func(p Progress) { o.Observe(in.Pipeline, in.Table.Name, in.Connector.Name, p) }
}

// observeResult passes an activity's final progress to a.Observer: p,
// or, if the activity failed before it had any (a zero p), the progress
// it started from, which its heartbeats reported. An output's progress
// always has output metrics.
func (a *Activities) observeResult(in IngestInput, p Progress, output bool) {
	observe := a.observer(in)
	if observe == nil {
		return
	}
	if p.Commit == 0 && len(p.Checkpoint) == 0 && p.Metrics == (Metrics{}) && p.Output == nil {
		p = in.Progress
	}
	if output && p.Output == nil {
		p.Output = &OutputMetrics{DeliveredVersion: -1}
	}
	observe(p)
}
