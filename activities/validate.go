package activities

import (
	"context"

	"github.com/sluicehq/sluice/pipeline"
)

// Validate checks a pipeline definition against the worker's transports,
// as loading a pipeline file does (pipeline.Validate). The Pipeline
// workflow runs it, as a local activity, before it applies a connector's
// new config or a changed definition (connector.update_config,
// pipeline.update), since the workflow cannot know the worker's registry.
// The error lists every problem with its path and is non-retryable.
func (a *Activities) Validate(ctx context.Context, p pipeline.Pipeline) error {
	if err := pipeline.Validate(&p, a.Registry); err != nil {
		return fatal(err)
	}
	return nil
}
