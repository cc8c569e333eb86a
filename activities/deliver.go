package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"go.temporal.io/sdk/activity"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

// DeliverPoll is how often a caught-up output looks for new table
// versions.
const DeliverPoll = 100 * time.Millisecond

// HoldInterval is how often a delivering output renews its hold on the
// table's files (store.Table.Hold): at its start, then after a commit at
// most this often.
const HoldInterval = time.Minute

// OutputCheckpoint is an output's position: the table version its
// destination holds (-1: none).
type OutputCheckpoint struct {
	Version int64 `json:"version"`
}

// Deliver runs one output connector: it follows the table's versions
// after the position its destination holds (the sink's own, from
// connectors.Sink.Open), writes their changes (dataChange true only:
// compactions carry none) and commits them to the destination together
// with the new position, so that a crash at any instant leaves the
// destination consistent and a retry resumes exactly after what it
// holds. Every version the table has when Deliver looks goes into one
// destination commit: an output started after a backfill (start_after)
// shows none of it, then all of it.
//
// It runs until canceled (pause: the open destination transaction is
// aborted and the position is what the destination holds) or, with
// in.Finish, until it has delivered every version of the table, when it
// returns with Metrics.EndOfInput. Errors are as Ingest's: config
// errors, refused credentials and a destination that does not fit are
// non-retryable [ErrTypeConfig]; others are retried by Temporal.
func (a *Activities) Deliver(ctx context.Context, in DeliverInput) (Progress, error) {
	var secrets connectors.Secrets
	p, err := a.deliver(ctx, in, &secrets)
	a.observeResult(in.IngestInput, p, true)
	return p, redact(secrets, err)
}

func (a *Activities) deliver(ctx context.Context, in DeliverInput, secrets *connectors.Secrets) (Progress, error) {
	if err := checkNames(in.Pipeline, in.Table.Name, in.Connector.Name); err != nil {
		return in.Progress, err
	}
	progress := in.Progress
	if progress.Output == nil {
		progress.Output = &OutputMetrics{DeliveredVersion: -1}
	} else {
		o := *progress.Output
		progress.Output = &o
	}
	if activity.HasHeartbeatDetails(ctx) {
		var hb Progress
		if err := activity.GetHeartbeatDetails(ctx, &hb); err == nil && hb.Output != nil && hb.Commit >= progress.Commit {
			progress = hb
		}
	}
	hb := startHeartbeat(ctx, a.heartbeatInterval(), progress, a.observer(in.IngestInput))
	defer hb.stop()
	endpoint := pipeline.Endpoint(in.Table.Name, in.Connector.Name)
	schema, err := in.Table.Schema()
	if err != nil {
		return progress, fatal(err)
	}
	table, err := a.table(ctx, in.IngestInput, schema)
	if err != nil {
		return progress, err
	}
	defer table.Close()
	sink, err := a.sink(in.IngestInput, schema, table.ID(), secrets)
	if err != nil {
		return progress, err
	}
	defer sink.Close()
	delivered, err := openSink(ctx, sink, endpoint)
	if err != nil {
		if errors.Is(err, connectors.ErrFatal) {
			return progress, fatal(fmt.Errorf("%s: %w", endpoint, err))
		}
		return progress, fmt.Errorf("%s: open: %w", endpoint, err)
	}
	if err := table.Refresh(ctx); err != nil {
		return progress, fmt.Errorf("%s: read the table: %w", endpoint, err)
	}
	if newest := table.Version(); delivered > newest {
		// Positions are keyed by pipeline, table and connector: a
		// destination ahead of the table holds another incarnation's
		// data (a pipeline recreated with a new table store).
		return progress, fatal(fmt.Errorf("%s: the destination says it holds table version %d, but table %s (id %s) has only %d versions: it was written by another pipeline of the same name; clear its position in the destination or name the pipeline differently", endpoint, delivered, in.Table.Name, table.ID(), newest+1))
	}
	// Vacuum must keep the files of the versions this output has still
	// to read, however far behind it is.
	if err := table.Hold(ctx, in.Connector.Name, delivered); err != nil {
		return progress, fmt.Errorf("%s: %w", endpoint, err)
	}
	d := &deliverer{ctx: ctx, table: table, sink: sink, hb: hb, progress: progress, endpoint: endpoint,
		reader: in.Connector.Name, held: time.Now(), secrets: *secrets}
	if g, ok := sink.(connectors.Guaranteed); ok {
		d.progress.Output.Guarantee = g.Guarantee()
	} else {
		d.progress.Output.Guarantee = connectors.ExactlyOnce
	}
	d.baseBytes, d.baseEncodeErrors = d.progress.Output.TransmittedBytes, d.progress.Output.NumEncodeErrors
	d.setDelivered(delivered)
	d.progress.Metrics.EndOfInput = false
	hb.set(d.progress)
	// The reader walks the table's versions while this goroutine writes
	// to the destination.
	p := startPump(ctx, int64(in.Connector.QueueLimit()), in.Connector.QueueLimit()/max(1, in.Connector.BatchLimit()),
		func(it deliverItem) {
			if it.rec != nil {
				it.rec.Release()
			}
		},
		func(ctx context.Context, emit func(deliverItem, int64) bool) error {
			return d.read(ctx, delivered, in.Finish, emit)
		})
	defer p.close()
	return d.run(p)
}

// openSink opens the sink, a panic in it being a fatal error.
func openSink(ctx context.Context, sink connectors.Sink, endpoint string) (v int64, err error) {
	defer connectors.Recover(&err, endpoint+" open")
	return sink.Open(ctx)
}

// sink builds the connector's sink for the table of id tableID, its
// ${env:NAME} references resolved into *secrets.
func (a *Activities) sink(in IngestInput, schema *arrow.Schema, tableID string, secrets *connectors.Secrets) (connectors.Sink, error) {
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
	sink, err := a.Registry.NewSink(in.Connector.Transport.Name, connectors.SinkParams{
		Endpoint: endpoint, Pipeline: in.Pipeline, Table: in.Table.Name, Connector: in.Connector.Name, TableID: tableID,
		Config: cfg, Format: in.Connector.Format, Schema: schema, PrimaryKey: in.Table.PrimaryKey, Allocator: a.Allocator,
	})
	if err != nil {
		return nil, fatal(fmt.Errorf("%s: %w", endpoint, err))
	}
	return sink, nil
}

type deliverer struct {
	secrets  connectors.Secrets // what the config's ${env:NAME} resolved to
	ctx      context.Context
	table    *store.Table
	sink     connectors.Sink
	hb       *heartbeat
	progress Progress
	endpoint string
	// the sink's counters start at zero with each activation
	baseBytes, baseEncodeErrors int64
	reader                      string    // the hold's name: the connector's
	held                        time.Time // when the hold was last renewed
}

// setDelivered records the destination's position.
func (d *deliverer) setDelivered(v int64) {
	d.progress.Output.DeliveredVersion = v
	d.progress.Commit = v + 1
	d.progress.Checkpoint, _ = json.Marshal(OutputCheckpoint{Version: v})
}

// deliverItem is what Deliver's reader passes to its writer: the
// changes of a version (rec), or, with rec nil, the end of a catch-up
// (commit: every change of the versions up to newest has been passed)
// or the news that the table has no version after the delivered one.
type deliverItem struct {
	rec    arrow.RecordBatch
	change store.Change
	commit bool
	newest int64 // the table's newest version when the reader looked
}

// read walks the table's versions after delivered, passing each
// version's changes, then a commit item once it has passed every version
// the table had when it looked. It polls every DeliverPoll once caught
// up and, with finish, ends with ErrEndOfInput instead.
func (d *deliverer) read(ctx context.Context, delivered int64, finish bool, emit func(deliverItem, int64) bool) (err error) {
	// A panic decoding the table's files fails the output, not the worker
	// (this runs in the pump's goroutine, outside Temporal's recovery).
	defer func() {
		var p *connectors.PanicError
		if errors.As(err, &p) {
			activity.GetLogger(d.ctx).Error("reading the table panicked", "endpoint", d.endpoint, "panic", d.secrets.Redact(fmt.Sprint(p.Value)), "stack", d.secrets.Redact(p.Stack))
		}
	}()
	defer connectors.Recover(&err, d.endpoint+" read the table")
	caughtUp := false
	for {
		if err := d.table.Refresh(ctx); err != nil {
			return fmt.Errorf("read the table: %w", err)
		}
		newest := d.table.Version()
		if newest > delivered {
			err := d.table.Changes(ctx, delivered+1, newest, func(ch store.Change, rec arrow.RecordBatch) error {
				rec.Retain()
				if !emit(deliverItem{rec: rec, change: ch, newest: newest}, rec.NumRows()) {
					rec.Release()
					return context.Canceled
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read versions %d..%d: %w", delivered+1, newest, err)
			}
			if !emit(deliverItem{commit: true, newest: newest}, 0) {
				return context.Canceled
			}
			delivered, caughtUp = newest, false
			continue // more may have come meanwhile
		}
		if finish {
			return connectors.ErrEndOfInput
		}
		if !caughtUp {
			if !emit(deliverItem{newest: newest}, 0) {
				return context.Canceled
			}
			caughtUp = true
		}
		select {
		case <-ctx.Done():
			return context.Canceled
		case <-time.After(DeliverPoll):
		}
	}
}

// run writes the reader's changes to the sink and commits at each of its
// commit items, until canceled or, with finish, caught up.
func (d *deliverer) run(p *pump[deliverItem]) (Progress, error) {
	var rows int64 // written since the last commit
	from := d.progress.Output.DeliveredVersion + 1
	for {
		e, _ := p.next(nil)
		if e.err != nil {
			switch {
			case errors.Is(e.err, connectors.ErrEndOfInput):
				d.progress.Output.LagSeconds = 0
				d.progress.Metrics.EndOfInput = true
				d.hb.set(d.progress)
				d.hb.report(d.progress)
				activity.RecordHeartbeat(d.ctx, d.progress)
				return d.progress, nil
			case errors.Is(e.err, context.Canceled) || d.ctx.Err() != nil:
				return d.paused()
			}
			return d.failed(e.err, from)
		}
		it := e.v
		d.progress.Output.TableVersion = max(d.progress.Output.TableVersion, it.newest)
		switch {
		case it.rec != nil:
			if rows == 0 {
				d.progress.Output.LagSeconds = time.Since(it.change.Time).Seconds()
			}
			err := d.sink.Write(d.ctx, connectors.ChangeBatch{Record: it.rec, Version: it.change.Version, Time: it.change.Time})
			it.rec.Release()
			p.freed(e.rows)
			if err != nil {
				return d.failed(err, from)
			}
			rows += e.rows
			prog := d.progress
			o := *prog.Output
			o.BufferedRecords = rows
			prog.Output = &o
			d.hb.set(prog)
		case it.commit:
			if err := d.commit(it.newest, rows); err != nil {
				return d.failed(err, from)
			}
			rows, from = 0, it.newest+1
		default: // caught up
			d.progress.Output.LagSeconds = 0
			d.hb.set(d.progress)
		}
	}
}

// failed is the result of a failed read, write or commit: a pause if the
// activity was canceled, a fatal_error if err is [connectors.ErrFatal],
// else a retryable error (Temporal retries from the destination's
// position).
func (d *deliverer) failed(err error, from int64) (Progress, error) {
	if d.ctx.Err() != nil {
		return d.paused()
	}
	if errors.Is(err, connectors.ErrFatal) {
		return d.progress, fatal(fmt.Errorf("%s: %w", d.endpoint, err))
	}
	d.progress.Output.NumTransportErrors++
	d.hb.set(d.progress)
	return d.progress, fmt.Errorf("%s: deliver versions from %d: %w", d.endpoint, from, err)
}

// paused is a canceled Deliver's result: the open destination
// transaction is aborted (Close), the position is what the destination
// holds.
func (d *deliverer) paused() (Progress, error) {
	d.progress.Output.BufferedRecords = 0
	return d.progress, nil
}

// commit commits the rows written since the last commit as the
// destination's position newest, and counts them.
func (d *deliverer) commit(newest, rows int64) error {
	if err := d.sink.Commit(d.ctx, newest); err != nil {
		return err
	}
	o := d.progress.Output
	o.TransmittedRecords += rows
	o.TotalProcessedInputRecords += rows
	o.BufferedRecords = 0
	if m, ok := d.sink.(connectors.SinkMetrics); ok {
		bytes, encodeErrors := m.Transmitted()
		o.TransmittedBytes, o.NumEncodeErrors = d.baseBytes+bytes, d.baseEncodeErrors+encodeErrors
	}
	d.setDelivered(newest)
	d.hb.set(d.progress)
	if rows > 0 && time.Since(d.held) >= HoldInterval {
		// A failure leaves the older hold, which keeps more: retried at
		// the next commit. A commit without rows may leave the
		// destination's position where it was (kafka_output commits no
		// empty transaction), so it does not move the hold.
		if err := d.table.Hold(d.ctx, d.reader, newest); err == nil {
			d.held = time.Now()
		} else {
			activity.GetLogger(d.ctx).Warn("renew the hold on the table's files", "endpoint", d.endpoint, "error", err)
		}
	}
	return nil
}
