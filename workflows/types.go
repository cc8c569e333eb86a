package workflows

import (
	"encoding/json"

	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// Names of the workflow type, signals, updates and queries. Signals and
// updates share names and meaning: a signal is fire-and-forget (the
// temporal CLI, the Web UI); an update is validated and answered (an
// unknown connector is an error).
const (
	WorkflowName = "Pipeline"

	ConnectorStart = "connector.start" // input: ConnectorRef
	ConnectorPause = "connector.pause" // input: ConnectorRef
	PipelineStart  = "pipeline.start"  // no input
	PipelinePause  = "pipeline.pause"  // no input
	PipelineStop   = "pipeline.stop"   // no input: pause everything, then complete

	// Updates only (they answer, and are refused while they cannot apply).
	// They change a connector that is not running: Paused, waiting for
	// start_after, finished or failed, with its activity returned. After
	// Kafka Connect's offsets API (KIP-875) and Feldera's
	// https://github.com/feldera/feldera/issues/5844.
	ConnectorSetCheckpoint = "connector.set_checkpoint" // input: CheckpointInput; answers ConnectorStats
	ConnectorReset         = "connector.reset"          // input: ConnectorRef; answers ConnectorStats
	ConnectorUpdateConfig  = "connector.update_config"  // input: ConfigInput; answers ConnectorStats
	PipelineUpdate         = "pipeline.update"          // input: pipeline.Pipeline; answers Changes
	// PipelineRerun resets every input connector carrying a label to the
	// beginning of its input (as connector.reset) and starts it: a
	// labelled backfill re-run inside a long-running pipeline. Refused,
	// changing nothing, while one of them runs.
	PipelineRerun = "pipeline.rerun" // input: RerunInput; answers PipelineStats

	QueryStats          = "stats"           // returns PipelineStats
	QueryConnectorStats = "connector.stats" // input ConnectorRef, returns ConnectorStats
)

// Search attributes the workflow keeps up to date when
// [Input.SearchAttributes] is set (sluice registers them on its dev
// server; on a cluster: temporal operator search-attribute create).
const (
	SearchAttributePipeline = "SluicePipeline" // Keyword: the pipeline's name
	SearchAttributeState    = "SluiceState"    // Keyword: Running, Paused, Stopping, Finished, Stopped
)

// Connector states, as ConnectorStats.State shows them. Starting and
// Pausing are transitional: a connector's activity is being scheduled or
// opened (the workflow's view says Running until its first heartbeat:
// see sluice.Stats), or was asked to stop and is committing what it read.
const (
	StateRunning  = "Running"
	StatePaused   = "Paused"
	StateFinished = "Finished" // end of input reached, everything read committed (an output: delivered all)
	StateFailed   = "Failed"   // a fatal error; connector.start retries
	StateStarting = "Starting"
	StatePausing  = "Pausing"
)

// CheckpointInput is connector.set_checkpoint's input: the connector and
// the checkpoint to start from, in the connector's own checkpoint shape
// (what `sluice connector P T C checkpoint` prints).
type CheckpointInput struct {
	Table      string          `json:"table"`
	Connector  string          `json:"connector"`
	Checkpoint json.RawMessage `json:"checkpoint"`
}

// RerunInput is pipeline.rerun's input: the label of the input
// connectors to run again from the beginning of their input.
type RerunInput struct {
	Label string `json:"label"`
}

// ConfigInput is connector.update_config's input: the connector's new
// config (its name may be left out), and whether to start over from the
// beginning of its input instead of keeping its checkpoint.
type ConfigInput struct {
	Table     string             `json:"table"`
	Connector string             `json:"connector"`
	Config    pipeline.Connector `json:"config"`
	Reset     bool               `json:"reset,omitempty"`
}

// Changes says what pipeline.update changed, by endpoint name.
type Changes struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Changed []string `json:"changed,omitempty"` // config of connectors that were not running
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added)+len(c.Removed)+len(c.Changed) == 0 }

// ConnectorRef names a connector: {"table": "numbers", "connector": "c1"}.
type ConnectorRef struct {
	Table     string `json:"table"`
	Connector string `json:"connector"`
}

// Input is the Pipeline workflow's input.
type Input struct {
	// Pipeline is the validated program.
	Pipeline pipeline.Pipeline `json:"pipeline"`
	// State is the state carried over by continue-as-new; nil at first.
	State *State `json:"state,omitempty"`
	// Paused starts the pipeline Paused.
	Paused bool `json:"paused,omitempty"`
	// SearchAttributes says the SluicePipeline and SluiceState search
	// attributes are registered and should be kept up to date.
	SearchAttributes bool `json:"search_attributes,omitempty"`
	// HistoryLimit continues as new once the history has this many events
	// (default 10,000), besides whenever Temporal suggests it.
	HistoryLimit int `json:"history_limit,omitempty"`
	// Schedule is set on the runs a Temporal Schedule starts (sluice
	// schedule create): each run is a fresh backfill with its own
	// identity, and ${schedule:...} placeholders in connector configs
	// take the run's scheduled window (see [ScheduleInput]).
	Schedule *ScheduleInput `json:"schedule,omitempty"`
	// HeartbeatTimeoutSeconds is the Ingest activities' heartbeat timeout:
	// how long a crashed worker's connector waits before it resumes
	// elsewhere. Default 10.
	HeartbeatTimeoutSeconds int `json:"heartbeat_timeout_seconds,omitempty"`
}

// ScheduleInput describes the schedule that started a run.
type ScheduleInput struct {
	// ID is the Temporal Schedule's ID (sluice schedule create NAME).
	ID string `json:"id"`
	// EverySeconds is the schedule's interval (--every), which makes a
	// window's end its start plus the interval; 0 for a cron schedule,
	// whose windows have a start only.
	EverySeconds int64 `json:"every_seconds,omitempty"`
}

// State is the pipeline's control state, carried across continue-as-new.
type State struct {
	// Paused is the pipeline's state: Running (false) or Paused.
	Paused bool `json:"paused"`
	// Stopping is set by pipeline.stop.
	Stopping bool `json:"stopping,omitempty"`
	// Connectors by endpoint name "table.connector".
	Connectors map[string]*ConnectorState `json:"connectors"`
	// Run is a scheduled run's identity (its schedule's ID and scheduled
	// start time), part of its connectors' writer names
	// (pipeline.Writer); empty for a pipeline that is not scheduled.
	Run string `json:"run,omitempty"`
	// Tables are the tables' Delta tables, by table name, recorded when
	// each table's first connector starts.
	Tables map[string]activities.TableRef `json:"tables,omitempty"`
}

// ConnectorState is one connector's control state.
type ConnectorState struct {
	// Paused is the connector's own state, Running (false) or Paused.
	Paused bool `json:"paused"`
	// Waiting is set while the connector's start_after has not fired and
	// nobody started it by hand.
	Waiting bool `json:"waiting,omitempty"`
	// Finished is set when the connector reached end of input with
	// nothing buffered.
	Finished bool `json:"finished,omitempty"`
	// FatalError is the error that stopped it; connector.start clears it
	// and tries again.
	FatalError string `json:"fatal_error,omitempty"`
	// Progress is the newest progress reported by its activity.
	Progress activities.Progress `json:"progress"`
	// Resolved is set once the connector's start has been resolved to a
	// concrete checkpoint (kafka_input's "latest", see
	// connectors.Resolver); Progress.Checkpoint then holds it until the
	// first commit.
	Resolved bool `json:"resolved,omitempty"`
	// Generation counts the times the connector was reset or given a
	// checkpoint: each starts a new writer (pipeline.Writer).
	Generation int `json:"generation,omitempty"`
	// Activations counts the Ingest activities started for it.
	Activations int `json:"activations,omitempty"`
}

// ConnectorStats is a connector's status in Feldera's shape: endpoint_name,
// config, paused, state, metrics, parse_errors, fatal_error, health and the
// current checkpoint. `sluice connector P T C stats` prints it, so that
//
//	sluice connector p t c stats | jq '.metrics.end_of_input == true and .metrics.buffered_records == 0'
//
// tells whether the connector has finished.
type ConnectorStats struct {
	EndpointName string             `json:"endpoint_name"`
	Config       pipeline.Connector `json:"config"`
	Paused       bool               `json:"paused"`
	State        string             `json:"state"` // StateRunning, StatePaused, StateFinished, StateFailed, StateStarting, StatePausing
	Active       bool               `json:"active"`
	Finished     bool               `json:"finished"`
	WaitingFor   []string           `json:"waiting_for,omitempty"` // start_after labels not yet satisfied
	Metrics      activities.Metrics `json:"metrics"`
	// OutputMetrics are an output connector's counters (Feldera's output
	// endpoint metrics) and lag; nil for inputs.
	OutputMetrics *activities.OutputMetrics `json:"output_metrics,omitempty"`
	ParseErrors   []connectors.ParseError   `json:"parse_errors"`
	FatalError    *string                   `json:"fatal_error"`
	Health        string                    `json:"health"` // "healthy" or "unhealthy"
	Checkpoint    json.RawMessage           `json:"checkpoint"`
}

// GlobalMetrics sums the connectors' counters.
type GlobalMetrics struct {
	TotalInputRecords    int64 `json:"total_input_records"`
	TotalInputBytes      int64 `json:"total_input_bytes"`
	BufferedInputRecords int64 `json:"buffered_input_records"`
	NumParseErrors       int64 `json:"num_parse_errors"`
	PipelineComplete     bool  `json:"pipeline_complete"` // every connector finished: inputs at end of input, outputs delivered all
	TotalOutputRecords   int64 `json:"total_output_records"`
}

// PipelineStats is the whole pipeline's status, Feldera-like.
type PipelineStats struct {
	Name          string           `json:"name"`
	State         string           `json:"state"` // Running, Paused, Stopping, Finished
	GlobalMetrics GlobalMetrics    `json:"global_metrics"`
	Inputs        []ConnectorStats `json:"inputs"`
	// Outputs are the output connectors, with OutputMetrics.
	Outputs []ConnectorStats `json:"outputs"`
}
