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
	hb := startHeartbeat(ctx, a.heartbeatInterval(), progress)
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
		reader: in.Connector.Name, held: time.Now()}
	if g, ok := sink.(connectors.Guaranteed); ok {
		d.progress.Output.Guarantee = g.Guarantee()
	} else {
		d.progress.Output.Guarantee = connectors.ExactlyOnce
	}
	d.baseBytes, d.baseEncodeErrors = d.progress.Output.TransmittedBytes, d.progress.Output.NumEncodeErrors
	d.setDelivered(delivered)
	d.progress.Metrics.EndOfInput = false
	hb.set(d.progress)
	return d.run(in.Finish)
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

// run delivers versions until canceled or, with finish, caught up.
func (d *deliverer) run(finish bool) (Progress, error) {
	for {
		if err := d.table.Refresh(d.ctx); err != nil {
			if d.ctx.Err() != nil {
				return d.paused()
			}
			return d.progress, fmt.Errorf("%s: read the table: %w", d.endpoint, err)
		}
		newest := d.table.Version()
		d.progress.Output.TableVersion = newest
		if newest > d.progress.Output.DeliveredVersion {
			if err := d.deliver(newest); err != nil {
				if d.ctx.Err() != nil {
					return d.paused()
				}
				return d.progress, err
			}
			continue // more may have come meanwhile
		}
		d.progress.Output.LagSeconds = 0
		d.hb.set(d.progress)
		if finish {
			d.progress.Metrics.EndOfInput = true
			activity.RecordHeartbeat(d.ctx, d.progress)
			return d.progress, nil
		}
		select {
		case <-d.ctx.Done():
			return d.paused()
		case <-time.After(DeliverPoll):
		}
	}
}

// paused is a canceled Deliver's result: the open destination
// transaction is aborted (Close), the position is what the destination
// holds.
func (d *deliverer) paused() (Progress, error) {
	d.progress.Output.BufferedRecords = 0
	return d.progress, nil
}

// deliver writes the changes of the versions after the delivered one up
// to newest and commits them as one destination commit.
func (d *deliverer) deliver(newest int64) error {
	from := d.progress.Output.DeliveredVersion + 1
	var rows int64
	first := true
	err := d.table.Changes(d.ctx, from, newest, func(ch store.Change, rec arrow.RecordBatch) error {
		if first {
			d.progress.Output.LagSeconds = time.Since(ch.Time).Seconds()
			first = false
		}
		if err := d.sink.Write(d.ctx, connectors.ChangeBatch{Record: rec, Version: ch.Version, Time: ch.Time}); err != nil {
			return err
		}
		rows += rec.NumRows()
		p := d.progress
		o := *p.Output
		o.BufferedRecords = rows
		p.Output = &o
		d.hb.set(p)
		return nil
	})
	if err == nil {
		err = d.sink.Commit(d.ctx, newest)
	}
	if err != nil {
		if errors.Is(err, connectors.ErrFatal) {
			return fatal(fmt.Errorf("%s: %w", d.endpoint, err))
		}
		d.progress.Output.NumTransportErrors++
		d.hb.set(d.progress)
		return fmt.Errorf("%s: deliver versions %d..%d: %w", d.endpoint, from, newest, err)
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
	if time.Since(d.held) >= HoldInterval {
		// A failure leaves the older hold, which keeps more: retried at
		// the next commit.
		if err := d.table.Hold(d.ctx, d.reader, newest); err == nil {
			d.held = time.Now()
		} else {
			activity.GetLogger(d.ctx).Warn("renew the hold on the table's files", "endpoint", d.endpoint, "error", err)
		}
	}
	return nil
}
