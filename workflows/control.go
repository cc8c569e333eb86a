package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/pipeline"
)

// effectTimeout bounds how long an update waits for its effect (a
// paused connector's activity to commit and return) before it answers
// with the state as it is then (Pausing).
const effectTimeout = 30 * time.Second

func (r *run) registerHandlers(ctx workflow.Context) error {
	for _, name := range []string{ConnectorStart, ConnectorPause} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context, ref ConnectorRef) (ConnectorStats, error) {
				if err := r.apply(name, ref); err != nil {
					return ConnectorStats{}, err
				}
				r.wake.SendAsync(nil)
				ep, _ := r.endpoint(ref)
				// Answer once the command took effect: the activity has
				// been started, or has committed and returned (histories
				// from before answered at once).
				if workflow.GetVersion(ctx, "update-effect", workflow.DefaultVersion, 1) >= 1 {
					_, _ = workflow.AwaitWithTimeout(ctx, effectTimeout, func() bool {
						if name == ConnectorStart {
							return r.running[ep] != nil || !r.active(ep)
						}
						return r.running[ep] == nil
					})
				}
				return r.connectorStats(ep), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, ref ConnectorRef) error {
				_, err := r.endpoint(ref)
				return err
			}})
		if err != nil {
			return err
		}
	}
	for _, name := range []string{PipelineStart, PipelinePause, PipelineStop} {
		err := workflow.SetUpdateHandler(ctx, name, func(ctx workflow.Context) (PipelineStats, error) {
			if err := r.apply(name, ConnectorRef{}); err != nil {
				return PipelineStats{}, err
			}
			r.wake.SendAsync(nil)
			if name != PipelineStart && workflow.GetVersion(ctx, "update-effect", workflow.DefaultVersion, 1) >= 1 {
				_, _ = workflow.AwaitWithTimeout(ctx, effectTimeout, func() bool { return len(r.running) == 0 })
			}
			return r.stats(), nil
		})
		if err != nil {
			return err
		}
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, ConnectorSetCheckpoint,
		func(ctx workflow.Context, in CheckpointInput) (ConnectorStats, error) {
			ep, _ := r.endpoint(ConnectorRef{Table: in.Table, Connector: in.Connector})
			r.restart(ep, in.Checkpoint)
			r.wake.SendAsync(nil)
			return r.connectorStats(ep), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in CheckpointInput) error {
			if _, err := r.idleInput(ConnectorRef{Table: in.Table, Connector: in.Connector}); err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(in.Checkpoint, &v); err != nil || v == nil {
				return fmt.Errorf("checkpoint: want a JSON value in the connector's checkpoint shape (see `sluice connector P T C checkpoint`): %q", string(in.Checkpoint))
			}
			return nil
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, ConnectorReset,
		func(ctx workflow.Context, ref ConnectorRef) (ConnectorStats, error) {
			ep, _ := r.endpoint(ref)
			r.restart(ep, nil)
			r.wake.SendAsync(nil)
			return r.connectorStats(ep), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, ref ConnectorRef) error {
			_, err := r.idleInput(ref)
			return err
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, PipelineRerun,
		func(ctx workflow.Context, in RerunInput) (PipelineStats, error) {
			eps, err := r.rerunnable(in.Label)
			if err != nil { // something started it while the update was admitted
				return PipelineStats{}, err
			}
			for _, ep := range eps {
				r.restart(ep, nil)
				r.st.Connectors[ep].Paused = false
			}
			r.wake.SendAsync(nil)
			_, _ = workflow.AwaitWithTimeout(ctx, effectTimeout, func() bool {
				for _, ep := range eps {
					if r.running[ep] == nil && r.active(ep) {
						return false
					}
				}
				return true
			})
			workflow.GetLogger(ctx).Info("label re-run", "label", in.Label, "connectors", eps)
			return r.stats(), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in RerunInput) error {
			_, err := r.rerunnable(in.Label)
			return err
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, ConnectorUpdateConfig,
		func(ctx workflow.Context, in ConfigInput) (ConnectorStats, error) {
			ref := ConnectorRef{Table: in.Table, Connector: in.Connector}
			ep, err := r.idle(ref)
			if err != nil {
				return ConnectorStats{}, err
			}
			cfg := in.Config
			if cfg.Name == "" {
				cfg.Name = in.Connector
			}
			next := clonePipeline(r.in.Pipeline)
			*next.Table(in.Table).Connector(in.Connector) = cfg
			if err := r.validate(ctx, next); err != nil {
				return ConnectorStats{}, err
			}
			if _, err := r.idle(ref); err != nil { // it may have been started while validating
				return ConnectorStats{}, err
			}
			r.in.Pipeline = next
			r.index()
			if in.Reset {
				r.restart(ep, nil)
			}
			r.wake.SendAsync(nil)
			workflow.GetLogger(ctx).Info("connector config updated", "connector", ep, "reset", in.Reset)
			return r.connectorStats(ep), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, in ConfigInput) error {
			if _, err := r.idle(ConnectorRef{Table: in.Table, Connector: in.Connector}); err != nil {
				return err
			}
			if in.Config.Name != "" && in.Config.Name != in.Connector {
				return fmt.Errorf("config.name: %q renames connector %q; declare a new connector instead (sluice run with the changed file)", in.Config.Name, in.Connector)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, PipelineUpdate,
		func(ctx workflow.Context, next pipeline.Pipeline) (Changes, error) {
			if err := r.validate(ctx, next); err != nil {
				return Changes{}, err
			}
			ch, err := r.changes(next) // again: the state may have moved while validating
			if err != nil || ch.Empty() {
				return ch, err
			}
			for _, ep := range ch.Removed {
				delete(r.st.Connectors, ep)
			}
			r.in.Pipeline = next
			r.index()
			r.wake.SendAsync(nil)
			workflow.GetLogger(ctx).Info("pipeline definition updated", "added", ch.Added, "removed", ch.Removed, "changed", ch.Changed)
			return ch, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, next pipeline.Pipeline) error {
			if err := pipeline.CheckNames(&next); err != nil {
				return err
			}
			_, err := r.changes(next)
			return err
		}})
	if err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryStats, func() (PipelineStats, error) { return r.stats(), nil }); err != nil {
		return err
	}
	return workflow.SetQueryHandler(ctx, QueryConnectorStats, func(ref ConnectorRef) (ConnectorStats, error) {
		ep, err := r.endpoint(ref)
		if err != nil {
			return ConnectorStats{}, err
		}
		return r.connectorStats(ep), nil
	})
}

// idle resolves ref to a connector that is not running: Paused (itself or
// the whole pipeline), waiting for start_after, finished or failed, with
// no activity left. Its checkpoint and config can then change.
func (r *run) idle(ref ConnectorRef) (string, error) {
	ep, err := r.endpoint(ref)
	if err != nil {
		return "", err
	}
	if r.active(ep) || r.running[ep] != nil {
		return "", fmt.Errorf("connector %s is %s: pause it first (sluice connector %s %s %s pause)", ep, r.connectorState(ep), r.in.Pipeline.Name, ref.Table, ref.Connector)
	}
	return ep, nil
}

// rerunnable returns the input connectors carrying label, every one
// idle (see idle); an error when there is none, or names each that runs.
func (r *run) rerunnable(label string) ([]string, error) {
	var eps []string
	var busy []error
	for _, t := range r.in.Pipeline.Tables {
		for _, c := range t.Connectors {
			if c.IsOutput() || !slices.Contains(c.Labels, label) {
				continue
			}
			ep, err := r.idle(ConnectorRef{Table: t.Name, Connector: c.Name})
			if err != nil {
				busy = append(busy, err)
				continue
			}
			eps = append(eps, ep)
		}
	}
	if len(busy) > 0 {
		return nil, fmt.Errorf("label %q: %w", label, errors.Join(busy...))
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("label %q: no input connector of pipeline %s carries it", label, r.in.Pipeline.Name)
	}
	return eps, nil
}

// idleInput is idle for input connectors only: an output's position is
// the table version its destination holds, kept in the destination.
func (r *run) idleInput(ref ConnectorRef) (string, error) {
	ep, err := r.idle(ref)
	if err != nil {
		return "", err
	}
	if r.conns[ep].IsOutput() {
		return "", fmt.Errorf("connector %s is an output: its position is the table version its destination holds, not a checkpoint that can be set or reset", ep)
	}
	return ep, nil
}

// restart makes the connector start over from checkpoint (nil: the
// beginning of its input, resolved again as at its first start) under a
// new writer, Paused: its metrics start from zero, and its rows already
// in the table stay there.
func (r *run) restart(ep string, checkpoint json.RawMessage) {
	c := r.st.Connectors[ep]
	c.Generation++
	c.Paused, c.Waiting, c.Finished, c.FatalError = true, false, false, ""
	c.Progress = activities.Progress{Checkpoint: checkpoint}
	c.Resolved = len(checkpoint) > 0
	workflow.GetLogger(r.ctx).Info("connector restarted", "connector", ep, "generation", c.Generation, "checkpoint", string(checkpoint))
}

// validate runs the worker's validation of a whole definition (the
// Validate local activity, since only a worker knows its transports).
func (r *run) validate(ctx workflow.Context, p pipeline.Pipeline) error {
	var a *activities.Activities
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 30 * time.Second})
	if err := workflow.ExecuteLocalActivity(lctx, a.Validate, p).Get(ctx, nil); err != nil {
		return fmt.Errorf("invalid pipeline: %w", err)
	}
	return nil
}

// changes compares a new definition with the running one and returns
// what changed, or an error naming what cannot change while it runs: a
// running connector's config, a removed connector that runs, a table's
// columns or primary key (the Delta table keeps its schema).
func (r *run) changes(next pipeline.Pipeline) (Changes, error) {
	var ch Changes
	if next.Name != r.in.Pipeline.Name {
		return ch, fmt.Errorf("name: the pipeline is %q, not %q", r.in.Pipeline.Name, next.Name)
	}
	var refused []string
	seen := map[string]bool{}
	for _, t := range next.Tables {
		old := r.in.Pipeline.Table(t.Name)
		if old != nil && (!reflect.DeepEqual(old.Columns, t.Columns) || !slices.Equal(old.PrimaryKey, t.PrimaryKey)) {
			refused = append(refused, fmt.Sprintf("table %s: its columns or primary key changed (clear the pipeline to change a table: sluice pipeline clear)", t.Name))
		}
		for _, c := range t.Connectors {
			ep := pipeline.Endpoint(t.Name, c.Name)
			seen[ep] = true
			cur, ok := r.conns[ep]
			switch {
			case !ok:
				ch.Added = append(ch.Added, ep)
			case !sameConnector(*cur, c):
				if r.active(ep) || r.running[ep] != nil {
					refused = append(refused, fmt.Sprintf("connector %s: its config changed while it is %s (pause it first)", ep, r.connectorState(ep)))
				}
				ch.Changed = append(ch.Changed, ep)
			}
		}
	}
	for _, ep := range r.order {
		if seen[ep] {
			continue
		}
		if r.running[ep] != nil {
			refused = append(refused, fmt.Sprintf("connector %s: removed while it is %s (pause it first)", ep, r.connectorState(ep)))
		}
		ch.Removed = append(ch.Removed, ep)
	}
	if len(refused) > 0 {
		return ch, fmt.Errorf("cannot apply the changed definition of pipeline %s:\n  %s", r.in.Pipeline.Name, joinLines(refused))
	}
	return ch, nil
}

func sameConnector(a, b pipeline.Connector) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func joinLines(lines []string) string {
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// clonePipeline deep-copies a definition through JSON.
func clonePipeline(p pipeline.Pipeline) pipeline.Pipeline {
	b, _ := json.Marshal(p)
	var out pipeline.Pipeline
	_ = json.Unmarshal(b, &out)
	return out
}
