package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sluicehq/sluice/pipeline"
)

// connectorState is the connector's state as the workflow sees it (see
// StateRunning and the others).
func (r *run) connectorState(ep string) string {
	c := r.st.Connectors[ep]
	run := r.running[ep]
	switch {
	case run != nil && run.cancel == nil:
		return StatePausing // asked to stop; committing what it read
	case run != nil:
		return StateRunning
	case c.FatalError != "":
		return StateFailed
	case c.Finished:
		return StateFinished
	case r.active(ep):
		return StateStarting
	}
	return StatePaused
}

// publish keeps what the Temporal Web UI and `temporal workflow list`
// show current: the SluicePipeline and SluiceState search attributes
// (when the namespace has them) and the workflow's current details, a
// Markdown table of its connectors (workflow.SetCurrentDetails; the UI
// reads it with the __temporal_workflow_metadata query).
func (r *run) publish(ctx workflow.Context) {
	r.upsertState(ctx, r.pipelineState())
	if d := r.currentDetails(); d != r.details {
		r.details = d
		workflow.SetCurrentDetails(ctx, d)
	}
}

// publishFinal records the state a completing workflow ends in.
func (r *run) publishFinal(ctx workflow.Context, state string) {
	if workflow.GetVersion(ctx, "final-state", workflow.DefaultVersion, 1) >= 1 {
		r.upsertState(ctx, state)
	}
	workflow.SetCurrentDetails(ctx, r.currentDetails())
}

func (r *run) upsertState(ctx workflow.Context, s string) {
	if !r.in.SearchAttributes || s == r.state {
		return
	}
	r.state = s
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		temporal.NewSearchAttributeKeyKeyword(SearchAttributePipeline).ValueSet(r.in.Pipeline.Name),
		temporal.NewSearchAttributeKeyKeyword(SearchAttributeState).ValueSet(s))
}

// currentDetails renders the connectors as a Markdown table: state,
// records (an input's committed, an output's delivered), end of input
// and error. Records are as of each connector's last commit the workflow
// saw (a pause, a finish, continue-as-new): a running connector's are
// marked "≥", and a line under the table says where the live count is
// (`sluice pipeline stats`, which reads the activities' heartbeats; a
// heartbeat reaches no workflow code, so the details cannot follow it).
func (r *run) currentDetails() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** — pipeline %s", r.pipelineState(), r.in.Pipeline.Name)
	if r.st.Run != "" {
		fmt.Fprintf(&b, ", scheduled run %s", r.st.Run)
	}
	b.WriteString("\n\n| connector | kind | state | records | end of input | error |\n|---|---|---|---:|---|---|\n")
	for _, ep := range r.order {
		c := r.st.Connectors[ep]
		s := r.connectorStats(ep)
		n := s.Metrics.TotalRecords
		if s.OutputMetrics != nil {
			n = s.OutputMetrics.TransmittedRecords
		}
		state := s.State
		records := fmt.Sprint(n)
		if state == StateRunning || state == StatePausing {
			records = "≥ " + records
		}
		if len(s.WaitingFor) > 0 {
			state += " (start_after " + strings.Join(s.WaitingFor, ", ") + ")"
		}
		eoi := ""
		if s.Metrics.EndOfInput {
			eoi = "yes"
		}
		msg := strings.NewReplacer("|", "\\|", "\n", " ").Replace(c.FatalError)
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", ep, r.conns[ep].Transport.Name, state, records, eoi, msg)
	}
	fmt.Fprintf(&b, "\nRecords as of each connector's last pause, finish or continue-as-new; a running connector (≥) has more: `sluice pipeline stats %s` shows the live count.\n", r.in.Pipeline.Name)
	return b.String()
}

// Summary is the pipeline's one-line static summary for the Web UI
// (client.StartWorkflowOptions.StaticSummary): its tables and their
// connectors with transports.
func Summary(p *pipeline.Pipeline) string { return summary(p) }

// StaticDetails is the pipeline's static details for the Web UI
// (client.StartWorkflowOptions.StaticDetails), in Markdown: each table's
// columns and connectors, with their labels and start_after.
func StaticDetails(p *pipeline.Pipeline) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sluice pipeline **%s**: its connectors' state, records and errors are in the current details; `sluice pipeline stats %s` has everything.\n", p.Name, p.Name)
	for _, t := range p.Tables {
		var cols []string
		for _, c := range t.Columns {
			cols = append(cols, c.Name+" "+c.Type)
		}
		fmt.Fprintf(&b, "\n**%s** (%s)\n\n", t.Name, strings.Join(cols, ", "))
		for _, c := range t.Connectors {
			fmt.Fprintf(&b, "- %s: %s", c.Name, c.Transport.Name)
			if len(c.Labels) > 0 {
				fmt.Fprintf(&b, ", labels %s", strings.Join(c.Labels, ", "))
			}
			if len(c.StartAfter) > 0 {
				fmt.Fprintf(&b, ", start_after %s", strings.Join(c.StartAfter, ", "))
			}
			if c.Paused {
				b.WriteString(", created paused")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func summary(p *pipeline.Pipeline) string {
	var parts []string
	for _, t := range p.Tables {
		var cs []string
		for _, c := range t.Connectors {
			cs = append(cs, c.Name+" ("+c.Transport.Name+")")
		}
		parts = append(parts, t.Name+": "+strings.Join(cs, ", "))
	}
	return "Sluice pipeline " + p.Name + " — " + strings.Join(parts, "; ")
}

// scheduled prepares a run started by a Temporal Schedule: its window
// starts at the TemporalScheduledStartTime search attribute the schedule
// sets (the workflow's start time when it is absent), the connectors'
// ${schedule:...} placeholders take the window, and the run's identity
// (the schedule's ID and the window's start) names its writers, so it
// reads its inputs from the beginning, and the same window run again
// resumes that window's run instead of duplicating it.
func (r *run) scheduled(ctx workflow.Context) error {
	start := workflow.GetInfo(ctx).WorkflowStartTime
	if v, ok := workflow.GetTypedSearchAttributes(ctx).GetTime(temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")); ok {
		start = v
	}
	start = start.UTC()
	w := pipeline.Window{Start: start}
	if r.in.Schedule.EverySeconds > 0 {
		w.End = start.Add(time.Duration(r.in.Schedule.EverySeconds) * time.Second)
	}
	if err := pipeline.ExpandSchedule(&r.in.Pipeline, w); err != nil {
		return temporal.NewNonRetryableApplicationError("scheduled run: "+err.Error(), ErrTypeInvalidPipeline, nil)
	}
	r.st.Run = r.in.Schedule.ID + "-" + start.Format("20060102T150405Z")
	workflow.GetLogger(ctx).Info("scheduled run", "run", r.st.Run, "window_start", w.Start, "window_end", w.End)
	return nil
}
